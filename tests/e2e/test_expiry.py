"""Tokens without a refresh token: alerts at the lead times, then re-authorization."""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    consent,
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

DAY = 86400


async def test_a_long_lived_token_warns_at_7_and_1_days_then_lapses(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], Reply(lifetime=40 * DAY))
    summary = await exchange(worker, state=callback["state"], code=callback["code"])
    assert summary["outcome"] == "long_lived"
    connection = await stored_connection(tl, "generic", cid)
    assert connection.expires_at is not None and connection.next_refresh_at is not None
    assert abs(connection.next_refresh_at - (connection.expires_at - 7 * DAY)) < 1

    async def alerts(kind: str) -> list[dict[str, object]]:
        return [d for t, d in await events_for(redis, settings, cid) if t == kind]

    async def rescheduled() -> bool:
        due = (await stored_connection(tl, "generic", cid)).next_refresh_at
        return due is not None and due > time.time() + 60

    # Six days before expiry (as if 34 days had passed): the 7-day alert, once.
    for _ in range(2):
        await make_due(redis, settings, "generic", cid, expires_at=repr(time.time() + 6 * DAY))
        await run_refresh_tick(worker)
        await wait_until(rescheduled, timeout=30, what="the check to reschedule")
    expiring = await alerts("alert.access_token_expiring")
    assert [a["lead_seconds"] for a in expiring] == [7 * DAY]
    connection = await stored_connection(tl, "generic", cid)
    assert connection.next_refresh_at is not None and connection.expires_at is not None
    assert abs(connection.next_refresh_at - (connection.expires_at - DAY)) < 1

    # Twelve hours before: the 1-day alert.
    await make_due(redis, settings, "generic", cid, expires_at=repr(time.time() + DAY / 2))
    await run_refresh_tick(worker)

    async def two_alerts() -> bool:
        return len(await alerts("alert.access_token_expiring")) == 2

    await wait_until(two_alerts, timeout=30, what="the 1-day alert")

    # Expired: the connection needs the user again, and leaves the schedule.
    await make_due(redis, settings, "generic", cid, expires_at=repr(time.time() - 1))
    await run_refresh_tick(worker)

    async def lapsed() -> bool:
        return bool(await alerts("alert.reauthorization_required"))

    await wait_until(lapsed, timeout=30, what="the connection to lapse")
    final = await alerts("alert.reauthorization_required")
    assert len(final) == 1 and final[0]["error"] == "access_token_expired"
    assert (await stored_connection(tl, "generic", cid)).status == "reauthorization_required"
    keys = Keys(settings.key_prefix, settings.redis_shards)
    assert await redis.zscore(keys.schedule_of("generic", cid), keys.member("generic", cid)) is None


async def test_a_degraded_connection_warns_at_once_with_the_shortest_lead(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, "generic", cid)  # 1 h token, no refresh token: degraded
    summary = await exchange(worker, state=callback["state"], code=callback["code"])
    assert summary["status"] == "degraded"
    connection = await stored_connection(tl, "generic", cid)
    # Both lead times have passed already, so it is due now.
    assert connection.next_refresh_at is not None
    assert connection.next_refresh_at <= time.time()

    await run_refresh_tick(worker)

    async def alerted() -> bool:
        types = [t for t, _ in await events_for(redis, settings, cid)]
        return "alert.access_token_expiring" in types

    await wait_until(alerted, timeout=30, what="the expiry alert")
    alert = dict(await events_for(redis, settings, cid))["alert.access_token_expiring"]
    assert alert["lead_seconds"] == DAY and alert["status"] == "degraded"
