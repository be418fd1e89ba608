"""Dashboard sessions against the real Redis: a notice never outlives its session."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from tokenlife.adapters.dashboard_sessions import DashboardSessions
from tokenlife.adapters.keys import Keys


async def test_a_notice_after_logout_does_not_bring_the_session_back(redis: Redis) -> None:
    keys = Keys("dash-" + uuid.uuid4().hex[:8])
    sessions = DashboardSessions(redis, keys, ttl_seconds=600)
    live = await sessions.create(b"\x01" * 32, 1000.0)
    gone = await sessions.create(b"\x02" * 32, 1000.0)
    await sessions.delete(gone)

    # A refresh finishing after the logout: nothing is written, no hash without a TTL.
    assert await sessions.set_notice(gone, "Refreshed.") is False
    (remaining,) = await redis.keys(f"{keys.prefix}:*")  # the live session's only
    assert await sessions.get(gone) is None

    assert await sessions.set_notice(live, "Refreshed.") is True
    assert 0 < await redis.ttl(remaining) <= 600  # HSET on the hash kept its TTL
    assert await sessions.pop_notice(live) == "Refreshed."
    assert await sessions.pop_notice(live) is None
