"""Providers without an ID token tell the account through their "current user" API: a
reconnect by another account is refused, a failed lookup leaves the account unknown and
never loses the stored tokens, and the access token shows up in no log and no event.

The `github-account` integration is the GitHub preset with its endpoints, and its
account endpoint (`account_url`), at the generic fake, whose `/user` answers GitHub-like
`{"id": <number per user>, "login": ...}` for the Bearer token."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.services.exchange_support import consent, exchange_service, new_id
from tests.services.test_exchange_subject import run, snapshot
from tests.support import Fakes, events_for
from tokenlife.core.account import AccountEndpoint
from tokenlife.runtime import Runtime
from tokenlife.services.exchange import ExchangeService
from tokenlife.settings import Settings

INTEGRATION = "github-account"


@pytest.fixture(autouse=True)
def answers_normally(fakes: Fakes) -> Iterator[None]:
    yield
    fakes.generic.script_account()


async def connect_as(service: ExchangeService, cid: str, user: str) -> dict[str, object]:
    return await run(service, await consent(service, INTEGRATION, cid, time.time(),
                                            login_hint=user))  # fmt: skip


async def test_the_integration_asks_the_account_endpoint_with_the_new_access_token(
    runtime: Runtime, fakes: Fakes
) -> None:
    service, cid = exchange_service(runtime), new_id()
    assert runtime.config.integrations[INTEGRATION].account_endpoint == AccountEndpoint(
        f"{fakes.generic.base_url}/user", "id", "GET"
    )
    seen = len(fakes.generic.account_requests)

    result = await connect_as(service, cid, "alice-acct")

    assert result["error"] is None
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert connection.subject == str(fakes.generic.account_id("alice-acct"))
    (request,) = fakes.generic.account_requests[seen:]
    assert request["method"] == "GET"
    assert request["authorization"] == f"Bearer {tokens.access_token}"


async def test_a_reconnect_by_the_same_account_replaces_the_tokens(
    runtime: Runtime, fakes: Fakes
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await connect_as(service, cid, "bob-acct")
    _, first = await runtime.tokens.load(INTEGRATION, cid)

    result = await connect_as(service, cid, "bob-acct")

    assert result["outcome"] != "failed" and result["error"] is None
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert connection.version == 2 and tokens.access_token != first.access_token
    assert connection.subject == str(fakes.generic.account_id("bob-acct"))


async def test_a_reconnect_by_another_account_is_refused_and_changes_nothing(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await connect_as(service, cid, "carol-acct")
    before = await snapshot(runtime, redis, settings, INTEGRATION, cid)
    assert before[0]["subject"] == str(fakes.generic.account_id("carol-acct"))

    result = await connect_as(service, cid, "mallory-acct")

    assert (result["outcome"], result["error"]) == ("failed", "subject_mismatch")
    assert await snapshot(runtime, redis, settings, INTEGRATION, cid) == before
    events = await events_for(redis, settings, cid)
    assert [d["error"] for t, d in events if t == "exchange.failed"] == ["subject_mismatch"]
    assert [t for t, _ in events].count("connection.authorized") == 1


async def test_with_allow_account_change_another_account_replaces_the_tokens(
    runtime: Runtime, fakes: Fakes
) -> None:
    service = exchange_service(runtime, {INTEGRATION: {"allow_account_change": True}})
    cid = new_id()
    await connect_as(service, cid, "dave-acct")

    result = await connect_as(service, cid, "erin-acct")

    assert result["error"] is None
    connection = await runtime.tokens.get(INTEGRATION, cid)
    erin = str(fakes.generic.account_id("erin-acct"))
    assert (connection.version, connection.subject) == (2, erin)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(status=503, body=b"down"), id="5xx"),
        pytest.param(Reply(status=429, body=b"slow down"), id="429"),
        pytest.param(Reply(status=401, body=b'{"message": "Bad credentials"}'), id="401"),
        pytest.param(Reply(status=200, body=b'{"login": "x"}'), id="no-id"),
        pytest.param(Reply(status=200, body=b"<html>", content_type="text/html"), id="html"),
        pytest.param(Reply(status=200, body=b"x" * (300 * 1024)), id="huge"),
    ],
)
async def test_a_failed_lookup_on_a_reconnect_keeps_the_stored_connection(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings,
    caplog: pytest.LogCaptureFixture, reply: Reply,
) -> None:  # fmt: skip
    service, cid = exchange_service(runtime), new_id()
    await connect_as(service, cid, "frank-acct")
    before = await snapshot(runtime, redis, settings, INTEGRATION, cid)
    fakes.generic.script_account(reply)

    with caplog.at_level(logging.WARNING):
        result = await connect_as(service, cid, "mallory-acct")

    assert (result["outcome"], result["error"]) == ("failed", "subject_unknown")
    assert await snapshot(runtime, redis, settings, INTEGRATION, cid) == before
    assert "treated as unknown" in caplog.text


async def test_a_failed_lookup_on_a_first_connect_stores_the_tokens_without_an_account(
    runtime: Runtime, fakes: Fakes
) -> None:
    service, cid = exchange_service(runtime), new_id()
    fakes.generic.script_account(Reply(status=500, body=b""))

    result = await connect_as(service, cid, "grace-acct")

    assert result["error"] is None
    connection = await runtime.tokens.get(INTEGRATION, cid)
    assert (connection.version, connection.subject) == (1, None)
    # The next reconnect whose lookup works binds the account from then on.
    fakes.generic.script_account()
    await connect_as(service, cid, "grace-acct")
    assert (await runtime.tokens.get(INTEGRATION, cid)).subject == str(
        fakes.generic.account_id("grace-acct")
    )


async def test_an_unreachable_account_endpoint_leaves_the_account_unknown(
    runtime: Runtime, fakes: Fakes, unused_tcp_port: int
) -> None:
    dead = AccountEndpoint(f"http://127.0.0.1:{unused_tcp_port}/user", "id")
    service = exchange_service(runtime, {INTEGRATION: {"account_endpoint": dead}})
    cid = new_id()

    result = await connect_as(service, cid, "heidi-acct")

    assert result["error"] is None
    assert (await runtime.tokens.get(INTEGRATION, cid)).subject is None


async def test_the_access_token_is_in_no_log_and_no_event(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    service, cid = exchange_service(runtime), new_id()
    issued = len(fakes.generic.issued_secrets)
    with caplog.at_level(logging.DEBUG):
        await connect_as(service, cid, "ivan-acct")
        fakes.generic.script_account(Reply(status=503, body=b"down"))
        await connect_as(service, cid, "ivan-acct")
        fakes.generic.script_account()
        await connect_as(service, cid, "mallory-acct")
    secrets = fakes.generic.issued_secrets[issued:]
    assert len(secrets) == 3  # one access token per consent, no refresh tokens
    events = repr(await events_for(redis, settings, cid))
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in events


async def test_a_header_aiohttp_refuses_leaves_the_account_unknown_not_the_tokens_lost(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """An access token with a line break can't go in a header: aiohttp raises a bare
    ValueError. The code is already redeemed, so that must not cost the tokens."""
    from tokenlife.core.tokens import TokenSet
    from tokenlife.services.account import account_from_endpoint

    integration = runtime.config.integrations[INTEGRATION]
    odd = TokenSet(
        access_token="odd\r\ntoken-value-secret", token_type="Bearer", refresh_token=None,
        expires_at=None, lifetime_seconds=None, lifetime_source=None, granted_scopes=None,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        account = await account_from_endpoint(runtime.http, integration, odd, 1.0)
    assert account is None
    assert "token-value-secret" not in caplog.text
