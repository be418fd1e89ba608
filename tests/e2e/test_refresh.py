"""Scheduled refresh through the real worker against the fake providers."""

from __future__ import annotations

import time
import uuid

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
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


def new_id() -> str:
    return "user-" + uuid.uuid4().hex[:12]


async def connected(tl: Tokenlife, worker: WorkerHandle, integration: str, cid: str) -> str:
    """Connect and return the fake's family id (the authorization code)."""
    callback = await consent(tl, integration, cid, login_hint=cid)
    summary = await exchange(worker, state=callback["state"], code=callback["code"])
    assert summary["refresh_token_received"], summary
    return callback["code"]


async def refreshed_once_more(
    redis: Redis, settings: Settings, cid: str, worker: WorkerHandle, kind: str
) -> None:
    before = (await event_types(redis, settings, cid)).count(kind)
    await run_refresh_tick(worker)

    async def seen() -> bool:
        return (await event_types(redis, settings, cid)).count(kind) > before

    await wait_until(seen, timeout=30, what=f"{kind} for {cid}")


async def test_a_due_connection_is_refreshed_and_rescheduled_with_rotation(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    family = await connected(tl, worker, "generic-offline", cid)
    await make_due(redis, settings, "generic-offline", cid)

    await refreshed_once_more(redis, settings, cid, worker, "token.refreshed")

    assert fakes.generic.refreshes(family) == 1
    assert fakes.generic.families[family].reuse_detected == 0
    connection = await stored_connection(tl, "generic-offline", cid)
    assert connection.version == 2 and connection.has_refresh_token
    assert connection.expires_at is not None and connection.next_refresh_at is not None
    # 1 h token: due 12 to 13.2 minutes ahead of expiry (20 % margin, up to 10 % jitter).
    margin = connection.expires_at - connection.next_refresh_at
    assert 720 <= margin <= 792 + 1
    refreshed = dict(await events_for(redis, settings, cid))["token.refreshed"]
    assert refreshed["refresh_token_rotated"] is True

    # The rotated token was saved: the next refresh presents it, and the fake accepts it.
    await make_due(redis, settings, "generic-offline", cid)
    await refreshed_once_more(redis, settings, cid, worker, "token.refreshed")
    assert fakes.generic.refreshes(family) == 2
    assert fakes.generic.families[family].reuse_detected == 0


async def test_a_response_without_refresh_token_keeps_the_old_one(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    family = await connected(tl, worker, "google", cid)  # Google never rotates

    for expected in (1, 2):
        await make_due(redis, settings, "google", cid)
        await refreshed_once_more(redis, settings, cid, worker, "token.refreshed")
        assert fakes.google.refreshes(family) == expected

    connection = await stored_connection(tl, "google", cid)
    assert connection.has_refresh_token and connection.status == "active"


async def test_transient_failures_back_off_and_recovery_is_announced(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    family = await connected(tl, worker, "generic-offline", cid)
    fakes.generic.script_refresh(family, Reply(status=503, body=b"down"))
    due = await make_due(redis, settings, "generic-offline", cid)
    await run_refresh_tick(worker)

    async def failed() -> bool:
        return (await stored_connection(tl, "generic-offline", cid)).consecutive_failures == 1

    await wait_until(failed, timeout=30, what="the failure to be recorded")
    connection = await stored_connection(tl, "generic-offline", cid)
    assert connection.last_error == "server_error"
    assert connection.next_refresh_at is not None
    # First retry: between half and all of the 5 s base, counted from the attempt.
    assert due + 2.5 <= connection.next_refresh_at <= time.time() + 5
    # The access token is still valid: no alert, only the bookkeeping.
    assert "alert.refresh_failing" not in await event_types(redis, settings, cid)

    fakes.generic.script_refresh(family, Reply())
    await make_due(redis, settings, "generic-offline", cid)
    await refreshed_once_more(redis, settings, cid, worker, "connection.recovered")
    types = await event_types(redis, settings, cid)
    assert types[-2:] == ["token.refreshed", "connection.recovered"]
    assert (await stored_connection(tl, "generic-offline", cid)).consecutive_failures == 0


async def test_retry_after_is_honoured(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    family = await connected(tl, worker, "generic-offline", cid)
    fakes.generic.script_refresh(
        family, Reply(status=429, body=b"slow down", headers={"Retry-After": "120"})
    )
    due = await make_due(redis, settings, "generic-offline", cid)
    await run_refresh_tick(worker)

    async def failed() -> bool:
        return (await stored_connection(tl, "generic-offline", cid)).consecutive_failures == 1

    await wait_until(failed, timeout=30, what="the 429 to be recorded")
    connection = await stored_connection(tl, "generic-offline", cid)
    assert connection.last_error == "rate_limited"
    assert connection.next_refresh_at is not None and connection.next_refresh_at >= due + 120


async def test_refresh_failing_after_expiry_alerts_once_not_per_attempt(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    family = await connected(tl, worker, "generic-offline", cid)
    fakes.generic.script_refresh(family, Reply(delay=3))  # longer than the 1 s HTTP timeout
    lapsed = repr(time.time() - 60)

    for attempt in (1, 2):
        await make_due(redis, settings, "generic-offline", cid, expires_at=lapsed)
        await run_refresh_tick(worker)

        async def recorded(n: int = attempt) -> bool:
            return (await stored_connection(tl, "generic-offline", cid)).consecutive_failures == n

        await wait_until(recorded, timeout=30, what=f"failure {attempt}")

    alerts = [d for t, d in await events_for(redis, settings, cid) if t == "alert.refresh_failing"]
    assert len(alerts) == 1
    assert alerts[0]["error"] == "timeout" and alerts[0]["failed_attempts"] == 1


async def test_invalid_grant_requires_reauthorization_with_a_diagnosis(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    family = await connected(tl, worker, "google", cid)
    fakes.google.script_refresh(
        family,
        Reply(status=400, body=b'{"error": "invalid_grant", "error_description": "Bad Request"}'),
    )
    await make_due(redis, settings, "google", cid)

    await refreshed_once_more(redis, settings, cid, worker, "alert.reauthorization_required")

    connection = await stored_connection(tl, "google", cid)
    assert connection.status == "reauthorization_required"
    assert connection.next_refresh_at is None
    keys = Keys(settings.key_prefix, settings.redis_shards)
    assert await redis.zscore(keys.schedule_of("google", cid), keys.member("google", cid)) is None
    alert = dict(await events_for(redis, settings, cid))["alert.reauthorization_required"]
    assert alert["error"] == "invalid_grant"
    assert "'Testing' publishing status" in alert["diagnosis"][0]["cause"]
    assert alert["diagnosis"][0]["source"].startswith("https://developers.google.com/")
