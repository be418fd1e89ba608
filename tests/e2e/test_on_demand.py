"""On-demand tokens under pressure: the provider's slot limit, a bounded wait answered
with Retry-After, an outcome-unknown refresh, a delete racing a rotation, and a status
that says when refreshes fail (issue 9 §4, §5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    consent,
    event_types,
    events_for,
    exchange,
    make_due,
    run_refresh_tick,
    stored_connection,
    wait_until,
)
from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status
from tokenlife.errors import TransientError
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.connections import ConnectionRemoval
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

INTEGRATION = "generic-offline"  # provider "custom"
KEY = "on-demand-key-0123456789"
WAIT = 1.0


@pytest.fixture
async def runtime(settings: Settings, fakes: Fakes) -> AsyncIterator[Runtime]:
    """In-process services with a short bound and two slots per provider."""
    configured = settings.model_copy(
        update={"api_token_wait_seconds": WAIT, "provider_concurrency": 2, "api_keys": (KEY,)}
    )
    opened = await Runtime.open(await load_config(configured))
    yield opened
    await opened.refresher.wait_running()
    await opened.close()


async def connected(tl: Tokenlife, worker: WorkerHandle) -> tuple[str, str]:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, INTEGRATION, cid, login_hint=cid)
    await exchange(worker, state=callback["state"], code=callback["code"])
    return cid, callback["code"]


def keys_of(settings: Settings) -> Keys:
    return Keys(settings.key_prefix, settings.redis_shards)


def slots_key(settings: Settings) -> str:
    return keys_of(settings).provider_slots("custom")


async def stale(redis: Redis, settings: Settings, cid: str, expires_in: float = 30) -> None:
    key = keys_of(settings).connection(INTEGRATION, cid)
    await redis.hset(key, "expires_at", repr(time.time() + expires_in))


async def fill_slots(redis: Redis, settings: Settings) -> list[str]:
    """Two refreshes of the provider in flight elsewhere (live slots, by Redis's clock)."""
    taken = [f"elsewhere-{uuid.uuid4().hex}" for _ in range(2)]
    await redis.zadd(slots_key(settings), dict.fromkeys(taken, time.time() + 3600))
    return taken


async def test_on_demand_refreshes_wait_for_a_provider_slot_within_the_bound(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings,
    runtime: Runtime,
) -> None:  # fmt: skip
    cid, family = await connected(tl, worker)
    await stale(redis, settings, cid, expires_in=5)
    taken = await fill_slots(redis, settings)
    try:
        assert await redis.zcard(slots_key(settings)) >= 2
        before = await stored_connection(tl, INTEGRATION, cid)
        assert before.has_refresh_token and before.expires_at is not None, before
        assert before.expires_at < time.time() + 10, before
        started = time.monotonic()
        with pytest.raises(TransientError) as raised:
            token = await runtime.access.get(INTEGRATION, cid)
            slots = await redis.zrange(slots_key(settings), 0, -1, withscores=True)
            pytest.fail(f"got a token expiring {token.expires_at}; slots {slots}")
        elapsed = time.monotonic() - started
        assert WAIT <= elapsed < WAIT + 1.0
        assert raised.value.retry_after == 2.0
        assert fakes.generic.families[family].refreshes == 0  # the limit held
    finally:
        await redis.zrem(slots_key(settings), *taken)

    token = await runtime.access.get(INTEGRATION, cid)  # a slot is free again
    assert token.expires_at is not None and token.expires_at > time.time() + 3000
    assert fakes.generic.families[family].refreshes == 1


async def test_the_token_api_answers_503_with_retry_after_within_the_bound(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings, runtime: Runtime
) -> None:
    cid, _ = await connected(tl, worker)
    await stale(redis, settings, cid)
    taken = await fill_slots(redis, settings)
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
            started = time.monotonic()
            response = await client.post(
                f"/api/connections/{INTEGRATION}/{cid}/token",
                headers={"Authorization": f"Bearer {KEY}"},
            )
            elapsed = time.monotonic() - started
            body: dict[str, Any] = await response.json()
    finally:
        await redis.zrem(slots_key(settings), *taken)
    assert response.status == 503, (response.status, body, elapsed)
    assert body["error"] == "provider_unavailable"
    assert response.headers["Retry-After"] == "2"
    assert elapsed < WAIT + 1.0 < 10  # below the documented client's 10 s timeout


async def test_a_timed_out_refresh_at_a_rotating_provider_is_retried_promptly(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings,
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cid, family = await connected(tl, worker)
    await stale(redis, settings, cid, expires_in=-5)  # lapsed: the alert goes out too
    # Slower than the 1 s HTTP timeout: the provider rotates, the answer never arrives.
    fakes.generic.script_refresh(family, Reply(delay=1.5), Reply())
    # The provider keeps a rotated-out token working for a while (Okta's grace period).
    monkeypatch.setattr(fakes.generic, "reuse_grace_seconds", 60.0)

    with pytest.raises(TransientError):  # the bound or the timeout, whichever comes first
        await runtime.access.get(INTEGRATION, cid)

    async def recorded() -> bool:
        return (await stored_connection(tl, INTEGRATION, cid)).consecutive_failures == 1

    await wait_until(recorded, timeout=10, what="the failure to be recorded")
    connection = await stored_connection(tl, INTEGRATION, cid)

    assert connection.last_error == "timeout"
    assert connection.next_refresh_at is not None
    assert connection.next_refresh_at <= time.time() + 5  # not a minutes-long backoff
    assert (connection.status, connection.status_reason) == (Status.DEGRADED, "refresh_failing")
    alerts = [d for t, d in await events_for(redis, settings, cid) if t == "alert.refresh_failing"]
    assert len(alerts) == 1 and alerts[0]["refresh_token_may_have_rotated"] is True
    assert alerts[0]["rotates_refresh_tokens"] == "unconfirmed"
    await wait_until(
        lambda: _true(fakes.generic.families[family].refreshes == 1),
        timeout=10, what="the provider to process the abandoned request",
    )  # fmt: skip

    # How the prompt retry ends: the stored (rotated-out) token, inside the provider's
    # reuse grace, gets a new token set, saved; nothing counts as reuse.
    state = fakes.generic.families[family]
    rotated_out = state.previous
    assert rotated_out is not None and rotated_out != state.live
    assert connection.next_refresh_at is not None
    await wait_until(
        lambda: _true(time.time() >= cast(float, connection.next_refresh_at)),
        timeout=10, what="the prompt retry to come due",
    )  # fmt: skip
    await run_refresh_tick(worker)

    async def recovered() -> bool:
        return (await stored_connection(tl, INTEGRATION, cid)).consecutive_failures == 0

    await wait_until(recovered, timeout=15, what="the prompt retry to be saved")
    after = await stored_connection(tl, INTEGRATION, cid)
    assert (after.status, after.status_reason) == (Status.ACTIVE, None)
    assert state.refreshes == 2 and state.reuse_detected == 0 and not state.revoked
    stored = (await runtime.tokens.tokens(INTEGRATION, cid)).refresh_token
    assert stored == state.live and stored != rotated_out


async def _true(value: bool) -> bool:
    return value


async def test_a_delete_waits_for_a_rotation_in_flight_and_leaves_nothing_behind(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings,
    runtime: Runtime,
) -> None:  # fmt: skip
    cid, family = await connected(tl, worker)
    await stale(redis, settings, cid)
    fakes.generic.script_refresh(family, Reply(delay=0.5))
    refreshing = asyncio.ensure_future(runtime.access.get(INTEGRATION, cid))
    live = fakes.generic.families[family].live
    await wait_until(
        lambda: _true(any(r.get("refresh_token") == live for r in fakes.generic.token_requests)),
        timeout=10, what="the refresh request",
    )  # fmt: skip

    result = await runtime.removal.delete(INTEGRATION, cid, time.time())

    assert refreshing.done(), "the delete did not wait for the refresh holding the lock"
    await refreshing
    assert result["deleted"] is True
    assert not await redis.exists(keys_of(settings).connection(INTEGRATION, cid))
    types = await event_types(redis, settings, cid)
    assert types.index("token.refreshed") < types.index("connection.deleted")


async def test_status_is_degraded_while_refreshes_fail_after_expiry_and_active_after(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid, family = await connected(tl, worker)
    fakes.generic.script_refresh(family, Reply(status=503, body=b"down"))
    await make_due(redis, settings, INTEGRATION, cid, expires_at=repr(time.time() - 5))
    # Lapsed with no attempt yet (no tick has run): not active, and it says why.
    overdue = await stored_connection(tl, INTEGRATION, cid)
    assert (overdue.status, overdue.status_reason) == (Status.DEGRADED, "refresh_overdue")
    await run_refresh_tick(worker)

    async def degraded() -> bool:
        connection = await stored_connection(tl, INTEGRATION, cid)
        return (connection.status, connection.status_reason) == (
            Status.DEGRADED, "refresh_failing",
        )  # fmt: skip

    await wait_until(degraded, timeout=30, what="the status to become degraded (failing)")

    fakes.generic.script_refresh(family, Reply())
    await make_due(redis, settings, INTEGRATION, cid)
    await run_refresh_tick(worker)

    async def active() -> bool:
        return (await stored_connection(tl, INTEGRATION, cid)).status is Status.ACTIVE

    await wait_until(active, timeout=30, what="the status to become active again")
    assert (await stored_connection(tl, INTEGRATION, cid)).status_reason is None


async def test_a_delete_that_waits_out_a_refresh_answers_connection_busy(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings, runtime: Runtime
) -> None:
    cid, _ = await connected(tl, worker)
    # A refresh holds the lock (as a worker's claim would), past a short wait.
    await redis.set(keys_of(settings).lock(INTEGRATION, cid), "a-refresh", px=60_000)
    runtime.removal = ConnectionRemoval(
        integrations=runtime.config.integrations, store=runtime.tokens, locks=runtime.locks,
        lock_wait_seconds=0.3, events_=runtime.events, http=runtime.http,
        http_timeout=settings.http_timeout_seconds,
    )  # fmt: skip
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
        response = await client.delete(
            f"/api/connections/{INTEGRATION}/{cid}", headers={"Authorization": f"Bearer {KEY}"}
        )
        body: dict[str, Any] = await response.json()

    assert response.status == 503, body
    assert body["error"] == "connection_busy"
    assert response.headers["Retry-After"] == "5"
    assert (
        await stored_connection(tl, INTEGRATION, cid)
    ).status is Status.ACTIVE  # nothing deleted
