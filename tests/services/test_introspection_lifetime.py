"""A token response that states no lifetime (no expires_in, no JWT exp), at a provider
with an RFC 7662 introspection endpoint: the exchange and the refresh learn `exp` there and
schedule from it; an endpoint that fails leaves today's unknown-lifetime handling.

The `generic` integration, pointed at a fake of its own (tests/fakes/introspecting.py)
that answers like Salesforce: opaque tokens, no expires_in, an introspection endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.fakes.introspecting import FakeIntrospecting
from tests.fakes.server import FakeServers
from tests.services.exchange_support import consent, exchange_service, new_id
from tests.services.test_exchange_subject import run
from tests.support import Fakes, events_for
from tokenlife.core.integration import Integration
from tokenlife.core.tokens import TokenSet
from tokenlife.runtime import Runtime
from tokenlife.services.exchange import ExchangeService
from tokenlife.services.introspected_lifetime import RECENT_FAILURES, learn_lifetime
from tokenlife.services.refresh import Outcome, Result
from tokenlife.settings import Settings

INTEGRATION = "generic"
DAY = 86400


@pytest.fixture(scope="module")
def provider(fakes: Fakes) -> Iterator[FakeIntrospecting]:
    fake = FakeIntrospecting()
    servers = FakeServers()
    servers.start(fake)
    fake.register("generic-client", "generic-secret", fakes.callback)
    yield fake
    servers.stop()


@pytest.fixture(autouse=True)
def answers_normally(provider: FakeIntrospecting) -> Iterator[None]:
    RECENT_FAILURES.clear()
    yield
    RECENT_FAILURES.clear()
    provider.introspection_replies = []
    provider.lifetime = 7200


def service(
    runtime: Runtime, provider: FakeIntrospecting, offline: bool, **fields: Any
) -> tuple[ExchangeService, Integration]:
    base = provider.base_url
    scopes = ("openid", "offline_access") if offline else ("openid",)
    changes = {"authorize_url": f"{base}/authorize", "token_url": f"{base}/token",
               "introspection_url": f"{base}/introspect", "scopes": scopes, **fields}  # fmt: skip
    exchange = exchange_service(runtime, {INTEGRATION: changes})
    return exchange, exchange.integrations[INTEGRATION]


async def connect(exchange: ExchangeService) -> tuple[str, dict[str, Any]]:
    cid = new_id()
    return cid, await run(exchange, await consent(exchange, INTEGRATION, cid, time.time()))


async def test_the_exchange_schedules_the_refresh_from_the_introspected_exp(
    runtime: Runtime, provider: FakeIntrospecting, redis: Redis, settings: Settings
) -> None:
    exchange, _ = service(runtime, provider, offline=True)
    seen = len(provider.introspection_requests)

    cid, result = await connect(exchange)

    assert result["error"] is None
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    exp = provider.expiry[tokens.access_token]
    assert connection.lifetime_source == "introspection"
    assert connection.expires_at == exp and connection.lifetime_seconds == pytest.approx(
        7200, abs=5
    )
    # Ahead of the real expiry by the margin (20% of 2 h, with jitter), not in an hour.
    assert connection.next_refresh_at is not None
    assert exp - 1600 <= connection.next_refresh_at <= exp - 1290
    (request,) = provider.introspection_requests[seen:]
    assert request["token"] == tokens.access_token
    assert request["token_type_hint"] == "access_token"
    assert request["authorization"].startswith("Basic ")  # as at the token endpoint
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert "alert.lifetime_unknown" not in types


async def test_without_a_refresh_token_a_long_introspected_lifetime_is_long_lived(
    runtime: Runtime, provider: FakeIntrospecting, redis: Redis, settings: Settings
) -> None:
    exchange, _ = service(runtime, provider, offline=False)
    provider.lifetime = 40 * DAY

    cid, result = await connect(exchange)

    assert result["outcome"] == "long_lived" and result["status"] == "active"
    connection = await runtime.tokens.get(INTEGRATION, cid)
    assert connection.lifetime_source == "introspection"
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert "connection.authorized" in types and "alert.lifetime_unknown" not in types


async def test_a_refresh_without_a_lifetime_asks_again(
    runtime: Runtime, provider: FakeIntrospecting
) -> None:
    exchange, integration = service(runtime, provider, offline=True)
    cid, _ = await connect(exchange)
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert tokens.refresh_token is not None
    provider.lifetime = 3 * 3600

    result = await runtime.refresher.refresh(
        integration, connection, tokens.refresh_token, time.time()
    )

    assert result.outcome.value == "refreshed"
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert connection.lifetime_source == "introspection"
    assert connection.expires_at == provider.expiry[tokens.access_token]
    assert connection.lifetime_seconds == pytest.approx(3 * 3600, abs=5)
    assert connection.next_refresh_at is not None  # 20% of 3 h ahead, with jitter
    assert (
        connection.expires_at - 2400 <= connection.next_refresh_at <= connection.expires_at - 1940
    )


async def test_a_refresh_whose_introspection_fails_is_refreshed_again_in_an_hour(
    runtime: Runtime, provider: FakeIntrospecting, caplog: pytest.LogCaptureFixture
) -> None:
    exchange, integration = service(runtime, provider, offline=True)
    cid, _ = await connect(exchange)
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert tokens.refresh_token is not None
    provider.introspection_replies = [Reply(status=502, body=b"bad gateway")]
    now = time.time()

    with caplog.at_level(logging.WARNING):
        result = await runtime.refresher.refresh(integration, connection, tokens.refresh_token, now)

    assert result.outcome.value == "refreshed"
    connection = await runtime.tokens.get(INTEGRATION, cid)
    assert (connection.expires_at, connection.lifetime_source) == (None, None)
    unknown = runtime.config.settings.refresh_unknown_lifetime_seconds
    assert connection.next_refresh_at == pytest.approx(now + unknown, abs=1)
    assert "introspection endpoint did not tell" in caplog.text


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(status=503, body=b"down"), id="5xx"),
        pytest.param(Reply(status=200, body=b'{"active": false}'), id="inactive"),
        pytest.param(Reply(status=200, body=b'{"active": true}'), id="no-exp"),
        pytest.param(Reply(status=200, body=b"<html>", content_type="text/html"), id="html"),
        pytest.param(Reply(status=401, body=b'{"error": "invalid_client"}'), id="401"),
        pytest.param(Reply(delay=1.5), id="timeout"),
    ],
)
async def test_an_introspection_that_fails_keeps_todays_unknown_lifetime(
    runtime: Runtime, provider: FakeIntrospecting, redis: Redis, settings: Settings,
    caplog: pytest.LogCaptureFixture, reply: Reply,
) -> None:  # fmt: skip
    exchange, _ = service(runtime, provider, offline=False)
    provider.introspection_replies = [reply]

    with caplog.at_level(logging.WARNING):
        cid, result = await connect(exchange)

    assert result["outcome"] == "lifetime_unknown" and result["status"] == "active"
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert (connection.expires_at, connection.lifetime_source) == (None, None)
    events = dict(await events_for(redis, settings, cid))
    assert events["alert.lifetime_unknown"]["access_token_lifetime_seconds"] is None
    assert "introspection endpoint did not tell" in caplog.text
    assert tokens.access_token not in caplog.text


async def test_no_time_left_in_the_refreshs_lock_asks_nothing(
    runtime: Runtime, provider: FakeIntrospecting, caplog: pytest.LogCaptureFixture
) -> None:
    _, integration = service(runtime, provider, offline=True)
    issued = TokenSet(access_token="at-x", token_type="Bearer", refresh_token="rt-x",
                      expires_at=None, lifetime_seconds=None, lifetime_source=None,
                      granted_scopes=None)  # fmt: skip
    seen = len(provider.introspection_requests)

    with caplog.at_level(logging.WARNING):
        kept = await learn_lifetime(runtime.http, integration, issued, 0.05, time.time())

    assert kept is issued
    assert len(provider.introspection_requests) == seen
    assert "no time left" in caplog.text


async def test_a_failing_endpoint_is_asked_and_warned_about_once_per_period(
    runtime: Runtime, provider: FakeIntrospecting, caplog: pytest.LogCaptureFixture
) -> None:
    exchange, integration = service(runtime, provider, offline=True)
    cid, _ = await connect(exchange)  # a token the fake knows
    _, stored = await runtime.tokens.load(INTEGRATION, cid)
    issued = TokenSet(access_token=stored.access_token, token_type="Bearer", refresh_token="rt",
                      expires_at=None, lifetime_seconds=None, lifetime_source=None,
                      granted_scopes=None)  # fmt: skip
    provider.introspection_replies = [Reply(status=503, body=b"down")] * 2
    seen = len(provider.introspection_requests)
    now = time.time()

    with caplog.at_level(logging.WARNING):
        for later in (0, 60, 599):
            assert await learn_lifetime(runtime.http, integration, issued, 5, now + later) is issued

    assert len(provider.introspection_requests) == seen + 1
    assert caplog.text.count("introspection endpoint did not tell") == 1
    assert "not asked again for 600 s" in caplog.text

    # The period over, it is asked again; an answer ends the pause at once.
    provider.introspection_replies = []
    learned = await learn_lifetime(runtime.http, integration, issued, 5, time.time() + 600)
    assert learned.lifetime_source == "introspection"
    assert len(provider.introspection_requests) == seen + 2
    assert not RECENT_FAILURES.holds((integration.name, f"{provider.base_url}/introspect"), now)


async def asked(provider: FakeIntrospecting, seen: int) -> None:
    """Until the introspection request has reached the fake (and its reply is pending)."""
    for _ in range(300):
        if len(provider.introspection_requests) > seen:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the introspection endpoint was never asked")


async def claimed_refresh(
    runtime: Runtime, provider: FakeIntrospecting, reply: Reply
) -> tuple[Integration, str, str, asyncio.Task[Result], float]:
    """A connection whose refresh (under a claimed lease) is under way, its introspection
    asked and to be answered with `reply`: the integration, the connection id, the old
    refresh token, the refresh and its `now`."""
    exchange, integration = service(runtime, provider, offline=True)
    cid, _ = await connect(exchange)
    old = (await runtime.tokens.tokens(INTEGRATION, cid)).refresh_token
    assert old is not None
    claim = await runtime.locks.claim_for_caller(integration, cid, slots=4)
    assert claim is not None and claim.connection is not None
    provider.introspection_replies = [reply]
    seen = len(provider.introspection_requests)
    now = time.time()
    task = asyncio.ensure_future(
        runtime.refresher.refresh(integration, claim.connection, old, now, claim.lease)
    )
    await asked(provider, seen)
    return integration, cid, old, task, now


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(delay=1.5), id="hangs-past-the-timeout"),
        pytest.param(Reply(delay=0.3, status=503, body=b"down"), id="fails"),
    ],
)
async def test_the_refreshed_tokens_are_saved_and_the_lock_given_back_before_introspection(
    runtime: Runtime, provider: FakeIntrospecting, redis: Redis, reply: Reply,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    with caplog.at_level(logging.WARNING):
        _, cid, old, task, now = await claimed_refresh(runtime, provider, reply)

        # The endpoint has not answered yet: the rotated refresh token is in Redis already,
        # and nobody holds the connection's lock.
        assert not task.done()
        during = await runtime.tokens.tokens(INTEGRATION, cid)
        assert during.refresh_token is not None and during.refresh_token != old
        assert not await redis.exists(runtime.keys.lock(INTEGRATION, cid))

        result = await task

    assert result.outcome is Outcome.REFRESHED
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert tokens.refresh_token == during.refresh_token
    assert (connection.expires_at, connection.lifetime_source) == (None, None)
    unknown = runtime.config.settings.refresh_unknown_lifetime_seconds
    assert connection.next_refresh_at == pytest.approx(now + unknown, abs=1)
    assert "introspection endpoint did not tell" in caplog.text
    assert tokens.access_token not in caplog.text and old not in caplog.text


async def test_the_introspected_exp_is_written_after_the_save(
    runtime: Runtime, provider: FakeIntrospecting, redis: Redis, settings: Settings
) -> None:
    provider.lifetime = 3 * 3600
    _, cid, old, task, _ = await claimed_refresh(runtime, provider, Reply(delay=0.3))
    saved = await runtime.tokens.get(INTEGRATION, cid)

    result = await task

    assert result.outcome is Outcome.REFRESHED
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert tokens.refresh_token not in (None, old)
    exp = provider.expiry[tokens.access_token]
    assert (connection.expires_at, connection.lifetime_source) == (exp, "introspection")
    assert connection.version > saved.version and saved.expires_at is None
    assert connection.next_refresh_at is not None  # 20% of 3 h ahead, with jitter
    assert exp - 2400 <= connection.next_refresh_at <= exp - 1940
    assert (connection.status, connection.verdict) == ("active", "refreshable")
    assert result.tokens is not None and result.tokens.expires_at == exp
    # token.refreshed went out with the save, before the lifetime was known; nothing more.
    refreshed = [d for t, d in await events_for(redis, settings, cid) if t == "token.refreshed"]
    assert len(refreshed) == 1 and refreshed[0]["expires_at"] is None


async def test_a_write_during_introspection_wins_over_the_learned_lifetime(
    runtime: Runtime, provider: FakeIntrospecting
) -> None:
    _, cid, _, task, _ = await claimed_refresh(runtime, provider, Reply(delay=0.3))
    saved = await runtime.tokens.get(INTEGRATION, cid)
    newer = await runtime.tokens.update(saved, now=time.time(), set_fields={"status": "active"})
    assert newer is not None

    result = await task

    assert result.outcome is Outcome.REFRESHED and result.tokens is not None
    assert result.tokens.expires_at is None  # what was saved, not what was learned
    connection = await runtime.tokens.get(INTEGRATION, cid)
    assert connection.version == newer
    assert (connection.expires_at, connection.lifetime_source) == (None, None)


async def test_a_refresh_holding_the_lock_during_introspection_keeps_its_version(
    runtime: Runtime, provider: FakeIntrospecting, redis: Redis
) -> None:
    """Another refresh took the lock while the endpoint was asked: the learned lifetime is
    dropped, so that refresh's save (a compare-and-set on the version it read) still lands
    and its rotated refresh token is kept."""
    provider.lifetime = 3 * 3600
    _, cid, _, task, _ = await claimed_refresh(runtime, provider, Reply(delay=0.3))
    saved = await runtime.tokens.get(INTEGRATION, cid)
    other = await runtime.locks.acquire(INTEGRATION, cid)
    assert other is not None

    result = await task

    assert result.outcome is Outcome.REFRESHED and result.tokens is not None
    assert result.tokens.expires_at is None
    connection = await runtime.tokens.get(INTEGRATION, cid)
    assert connection.version == saved.version  # the other refresh's save would land
    assert await redis.get(runtime.keys.lock(INTEGRATION, cid)) == other  # still its lock
