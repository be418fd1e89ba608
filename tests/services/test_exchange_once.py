"""ExchangeService against the real Redis and the fake providers: a code is exchanged
once, the account a connection is bound to can't be swapped, and RFC 9207 `iss` is checked."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from tests.fakes.base import FakeProvider, Reply, _unsigned_jwt
from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes, events_for
from tokenlife.adapters.keys import Keys
from tokenlife.errors import UnknownConnectionError
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange import ExchangeService
from tokenlife.settings import Settings


async def run(
    service: ExchangeService,
    callback: dict[str, str],
    task: ExchangeAttempt | None = None,
    iss: str | None = None,
) -> dict[str, Any]:
    return await service.exchange_code(
        state=callback["state"],
        code=callback.get("code"),
        error=callback.get("error"),
        error_description=callback.get("error_description"),
        attempt=task or attempt(),
        now=time.time(),
        iss=iss,
    )


async def connect(
    service: ExchangeService, integration: str, cid: str, **user: str
) -> dict[str, Any]:
    return await run(service, await consent(service, integration, cid, time.time(), **user))


def code_requests(fake: FakeProvider, code: str) -> int:
    return sum(1 for r in fake.token_requests if r.get("code") == code)


async def stored_hash(
    redis: Redis, settings: Settings, integration: str, cid: str
) -> dict[str, str]:
    key = Keys(settings.key_prefix, settings.redis_shards).connection(integration, cid)
    return cast(dict[str, str], await redis.hgetall(key))


async def schedule_score(redis: Redis, settings: Settings, integration: str, cid: str) -> Any:
    keys = Keys(settings.key_prefix, settings.redis_shards)
    return await redis.zscore(keys.schedule_of(integration, cid), keys.member(integration, cid))


# -- a task delivered twice ------------------------------------------------------------


async def test_a_task_run_again_after_the_save_returns_the_first_summary(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "google", cid, time.time())
    task = attempt()

    first = await run(service, callback, task)
    # The worker died after the save, before acknowledging: the broker delivers the same
    # task again; a replayed callback sends the same state under another task id.
    again = await run(service, callback, task)
    replayed = await run(service, callback, attempt())

    assert first["outcome"] == "refreshable" and first["error"] is None
    assert again == first
    assert replayed == first
    assert code_requests(fakes.google, callback["code"]) == 1
    assert [t for t, _ in await events_for(redis, settings, cid)] == ["connection.authorized"]
    assert (await runtime.tokens.get("google", cid)).version == 1


async def test_a_failed_exchange_run_again_gives_the_same_failure_and_one_event(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic", cid, time.time())
    fakes.generic.script(callback["code"], Reply(status=400, body=b'{"error": "invalid_grant"}'))
    task = attempt()

    first = await run(service, callback, task)
    again = await run(service, callback, task)

    assert first["error"] == "invalid_grant"
    assert again == first
    assert code_requests(fakes.generic, callback["code"]) == 1
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert types == ["exchange.failed", "alert.exchange_failed"]  # once, with its alert


async def test_the_kept_outcome_holds_no_token_value_and_drops_the_verifier(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "google", cid, time.time())
    await run(service, callback)

    exchanging = Keys(settings.key_prefix, settings.redis_shards).exchanging(callback["state"])
    claim = cast(dict[str, str], await redis.hgetall(exchanging))
    assert set(claim) == {"owner", "sent_at", "exchanged"}  # the PKCE verifier is gone
    for secret in fakes.google.issued_secrets:
        assert secret not in claim["exchanged"]
    ttl = await redis.ttl(exchanging)
    assert 2 * 3600 - 60 < ttl <= 2 * 3600  # outlives the broker's 1 h visibility timeout


async def test_the_alert_of_a_degraded_connection_is_saved_with_it_in_one_step(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()

    result = await connect(service, "generic", cid)  # no offline_access: no refresh token

    assert result["outcome"] == "refresh_token_missing" and result["fixes"]
    connection = await runtime.tokens.get("generic", cid)
    assert connection.last_alert is not None
    assert connection.last_alert["type"] == "alert.refresh_token_missing"
    assert connection.last_alert["fixes"] == result["fixes"]
    events = await events_for(redis, settings, cid)
    assert [t for t, _ in events] == ["connection.authorized", "alert.refresh_token_missing"]


# -- the account a connection is bound to ------------------------------------------------


async def test_a_reconnect_as_another_account_is_refused_and_changes_nothing(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    assert (await connect(service, "google", cid, login_hint="alice"))["error"] is None
    before = await stored_hash(redis, settings, "google", cid)
    tokens_before = await runtime.tokens.tokens("google", cid)
    due_before = await schedule_score(redis, settings, "google", cid)

    result = await connect(service, "google", cid, login_hint="mallory")

    assert result["outcome"] == "failed"
    assert result["error"] == "subject_mismatch"
    assert await stored_hash(redis, settings, "google", cid) == before  # every field
    assert await runtime.tokens.tokens("google", cid) == tokens_before  # decrypted too
    assert await schedule_score(redis, settings, "google", cid) == due_before
    assert (await runtime.tokens.get("google", cid)).subject == "alice"
    events = await events_for(redis, settings, cid)
    assert [t for t, _ in events] == ["connection.authorized", "exchange.failed"]
    assert events[1][1]["error"] == "subject_mismatch"
    assert "mallory" not in json.dumps(events[1][1])  # nobody's subject in the event


async def test_with_allow_account_change_a_reconnect_replaces_the_account(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service = exchange_service(runtime, {"google": {"allow_account_change": True}})
    cid = new_id()
    await connect(service, "google", cid, login_hint="alice")
    tokens_before = await runtime.tokens.tokens("google", cid)

    result = await connect(service, "google", cid, login_hint="bob")

    assert result["outcome"] == "refreshable"
    connection, tokens = await runtime.tokens.load("google", cid)
    assert connection.subject == "bob"
    assert connection.version == 2
    assert tokens.access_token != tokens_before.access_token


async def test_a_reconnect_with_the_same_account_replaces_the_tokens(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await connect(service, "microsoft", cid, login_hint="alice")
    tokens_before = await runtime.tokens.tokens("microsoft", cid)

    result = await connect(service, "microsoft", cid, login_hint="alice")

    assert result["outcome"] == "refreshable"
    connection, tokens = await runtime.tokens.load("microsoft", cid)
    assert (connection.subject, connection.version) == ("alice", 2)
    assert tokens.refresh_token != tokens_before.refresh_token
    assert connection.as_json()["subject"] == "alice"


async def test_a_provider_that_drops_the_promised_id_token_is_refused(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await connect(service, "generic", cid, login_hint="alice")
    before = await stored_hash(redis, settings, "generic", cid)
    fakes.generic.issues_id_tokens = False
    try:
        result = await connect(service, "generic", cid, login_hint="bob")
    finally:
        fakes.generic.issues_id_tokens = True

    assert result["error"] == "invalid_id_token"  # `openid` was requested (OIDC §3.1.3.3)
    assert await stored_hash(redis, settings, "generic", cid) == before


async def test_an_id_token_for_another_client_ends_in_invalid_id_token(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic", cid, time.time())
    now = int(time.time())
    foreign = _unsigned_jwt({"iss": fakes.generic.base_url, "sub": "alice",
                             "aud": "another-client", "exp": now + 3600})  # fmt: skip
    body = {"access_token": "at-x", "token_type": "Bearer", "expires_in": 3600, "id_token": foreign}
    fakes.generic.script(callback["code"], Reply(body=json.dumps(body).encode()))

    result = await run(service, callback)

    assert result["error"] == "invalid_id_token"
    with pytest.raises(UnknownConnectionError):
        await runtime.tokens.get("generic", cid)
    events = await events_for(redis, settings, cid)
    assert [(t, d["error"]) for t, d in events] == [
        ("exchange.failed", "invalid_id_token"),
        ("alert.exchange_failed", "invalid_id_token"),
    ]


# -- RFC 9207: the issuer in the authorization response -----------------------------------


async def test_an_iss_that_is_not_the_issuer_is_refused_before_the_code_is_sent(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic-offline", cid, time.time())

    result = await run(service, callback, iss="https://attacker.example")

    assert result["error"] == "issuer_mismatch"
    assert code_requests(fakes.generic, callback["code"]) == 0
    with pytest.raises(UnknownConnectionError):
        await runtime.tokens.get("generic-offline", cid)
    events = await events_for(redis, settings, cid)
    assert [(t, d["error"]) for t, d in events] == [
        ("exchange.failed", "issuer_mismatch"),
        ("alert.exchange_failed", "issuer_mismatch"),
    ]


@pytest.mark.parametrize("iss_of", [lambda base: base + "/", lambda base: base.upper()])
async def test_iss_is_compared_as_an_exact_string(
    runtime: Runtime, fakes: Fakes, iss_of: Any
) -> None:
    service = exchange_service(runtime)
    callback = await consent(service, "generic-offline", new_id(), time.time())

    result = await run(service, callback, iss=iss_of(fakes.generic.base_url))

    assert result["error"] == "issuer_mismatch"


async def test_the_issuer_itself_is_accepted_and_the_id_token_iss_checked(
    runtime: Runtime, fakes: Fakes
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic-offline", cid, time.time())

    result = await run(service, callback, iss=fakes.generic.base_url)

    assert result["outcome"] == "refreshable"
    assert (await runtime.tokens.get("generic-offline", cid)).subject == "alice"


async def test_a_missing_iss_is_refused_where_the_server_promises_one(
    runtime: Runtime, fakes: Fakes
) -> None:
    service = exchange_service(runtime, {"generic-offline": {"require_iss": True}})
    callback = await consent(service, "generic-offline", new_id(), time.time())

    result = await run(service, callback)

    assert result["error"] == "issuer_mismatch"
    assert code_requests(fakes.generic, callback["code"]) == 0


async def test_without_a_known_issuer_iss_is_accepted_as_it_comes(
    runtime: Runtime, fakes: Fakes
) -> None:
    service = exchange_service(runtime)
    callback = await consent(service, "google", new_id(), time.time())

    result = await run(service, callback, iss="https://accounts.google.com")

    assert result["outcome"] == "refreshable"


async def test_a_server_that_promises_iss_makes_it_required(
    settings: Settings, fakes: Fakes
) -> None:
    fakes.generic.sends_iss = True  # discovery advertises it, callbacks carry it
    try:
        runtime = await Runtime.open(await load_config(settings))
    finally:
        fakes.generic.sends_iss = False
    try:
        assert runtime.config.integrations["generic-offline"].require_iss
        assert not runtime.config.integrations["generic"].require_iss  # no discovery there
        service = exchange_service(runtime)
        fakes.generic.sends_iss = True
        try:
            sent = await consent(service, "generic-offline", new_id(), time.time())
            dropped = await consent(service, "generic-offline", new_id(), time.time())
        finally:
            fakes.generic.sends_iss = False

        assert sent["iss"] == fakes.generic.base_url
        assert (await run(service, sent, iss=sent["iss"]))["outcome"] == "refreshable"
        assert (await run(service, dropped))["error"] == "issuer_mismatch"  # iss stripped
    finally:
        await runtime.close()
