"""The account a connection is bound to can't be unbound: a reconnect whose provider
doesn't say who the account is (no ID token) is refused over a stored subject, and a
token response without the ID token that `openid` promised is refused outright. The
user can cause both by deleting `openid` from the authorization URL before consenting."""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes, events_for
from tokenlife.adapters.keys import Keys
from tokenlife.runtime import Runtime
from tokenlife.services.exchange import ExchangeService
from tokenlife.settings import Settings

DRIVE = "https://www.googleapis.com/auth/drive.readonly"


def without_openid(url: str) -> str:
    """The authorization URL as a user edits it: `openid` deleted from its scope."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["scope"] = " ".join(s for s in query["scope"].split() if s != "openid")
    return urlunsplit(parts._replace(query=urlencode(query)))


async def consent_without_openid(
    service: ExchangeService, integration: str, cid: str, user: str
) -> dict[str, str]:
    request = await service.start_authorization(integration, cid, time.time())
    url = without_openid(request.url) + "&" + urlencode({"login_hint": user})
    assert "openid" not in parse_qs(urlsplit(url).query)["scope"][0]
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def run(service: ExchangeService, callback: dict[str, str]) -> dict[str, Any]:
    return await service.exchange_code(
        state=callback["state"], code=callback["code"], error=None, error_description=None,
        attempt=attempt(), now=time.time(),
    )  # fmt: skip


async def snapshot(
    runtime: Runtime, redis: Redis, settings: Settings, integration: str, cid: str
) -> tuple[dict[str, str], Any, Any]:
    """Every field of the stored hash, the decrypted tokens and the schedule entry."""
    keys = Keys(settings.key_prefix, settings.redis_shards)
    fields = cast(dict[str, str], await redis.hgetall(keys.connection(integration, cid)))
    due = await redis.zscore(keys.schedule_of(integration, cid), keys.member(integration, cid))
    return fields, await runtime.tokens.tokens(integration, cid), due


async def test_a_reconnect_with_an_unknown_subject_over_a_stored_one_is_refused(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    first = await run(service, await consent(service, "google", cid, time.time(),
                                             login_hint="alice"))  # fmt: skip
    assert first["error"] is None
    before = await snapshot(runtime, redis, settings, "google", cid)
    assert before[0]["subject"] == "alice"
    # The integration no longer asks for `openid`: the provider can't say who consents.
    no_openid = exchange_service(runtime, {"google": {"scopes": (DRIVE,)}})

    result = await run(no_openid, await consent(no_openid, "google", cid, time.time(),
                                                login_hint="mallory"))  # fmt: skip

    assert (result["outcome"], result["error"]) == ("failed", "subject_unknown")
    assert await snapshot(runtime, redis, settings, "google", cid) == before
    events = await events_for(redis, settings, cid)
    assert [t for t, _ in events] == ["connection.authorized", "exchange.failed"]
    assert events[1][1]["error"] == "subject_unknown"


async def test_with_allow_account_change_an_unknown_subject_replaces_and_keeps_the_last(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await run(service, await consent(service, "google", cid, time.time(), login_hint="alice"))
    changes = {"google": {"scopes": (DRIVE,), "allow_account_change": True}}
    no_openid = exchange_service(runtime, changes)

    result = await run(no_openid, await consent(no_openid, "google", cid, time.time()))

    assert result["error"] is None
    connection = await runtime.tokens.get("google", cid)
    # The last account a provider confirmed: an unknown one never erases it.
    assert (connection.version, connection.subject) == (2, "alice")


@pytest.mark.parametrize("integration", ["google", "generic"])
async def test_alice_then_no_id_token_then_mallory_is_refused_at_both_steps(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings, integration: str
) -> None:
    service, cid = exchange_service(runtime), new_id()
    first = await run(service, await consent(service, integration, cid, time.time(),
                                             login_hint="alice"))  # fmt: skip
    assert first["error"] is None
    before = await snapshot(runtime, redis, settings, integration, cid)

    # Step 2: `openid` deleted from the URL before consenting; tokenlife asked for it.
    stripped = await run(service, await consent_without_openid(service, integration, cid,
                                                               "mallory"))  # fmt: skip
    assert (stripped["outcome"], stripped["error"]) == ("failed", "invalid_id_token")
    assert "no id_token" in stripped["error_description"]
    assert await snapshot(runtime, redis, settings, integration, cid) == before

    # Step 3: mallory again, with the ID token this time: alice is still bound.
    third = await run(service, await consent(service, integration, cid, time.time(),
                                             login_hint="mallory"))  # fmt: skip
    assert third["error"] == "subject_mismatch"
    assert await snapshot(runtime, redis, settings, integration, cid) == before
    events = await events_for(redis, settings, cid)
    failed = [d["error"] for t, d in events if t == "exchange.failed"]
    assert failed == ["invalid_id_token", "subject_mismatch"]
    assert [t for t, _ in events].count("connection.authorized") == 1


async def test_a_first_connect_without_the_promised_id_token_stores_nothing(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()

    result = await run(service, await consent_without_openid(service, "generic", cid, "bob"))

    assert result["error"] == "invalid_id_token"
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic", cid)
    assert not await redis.exists(key)


async def test_without_openid_requested_the_account_stays_unknown(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service = exchange_service(runtime, {"generic": {"scopes": ("profile",)}})
    cid = new_id()
    await run(service, await consent(service, "generic", cid, time.time(), login_hint="alice"))

    result = await run(service, await consent(service, "generic", cid, time.time(),
                                              login_hint="bob"))  # fmt: skip

    assert result["error"] is None  # nothing was ever known to compare with
    connection = await runtime.tokens.get("generic", cid)
    assert (connection.subject, connection.version) == (None, 2)


async def test_a_save_outside_an_exchange_without_a_subject_keeps_the_stored_one(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await run(service, await consent(service, "google", cid, time.time(), login_hint="alice"))
    connection, tokens = await runtime.tokens.load("google", cid)

    await runtime.tokens.save(
        integration="google", connection_id=cid, provider="google", tokens=tokens,
        verdict=connection.verdict, status=connection.status,
        scopes_requested=connection.scopes_requested, next_check_at=None, now=time.time(),
    )  # fmt: skip

    assert (await runtime.tokens.get("google", cid)).subject == "alice"
