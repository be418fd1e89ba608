"""Per-minute refresh outcomes beside the counters (real Redis): written in the counters'
round trip, read back as the last hour, gone after their TTL; dashboard sessions too."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from tokenlife.adapters.dashboard_sessions import DashboardSessions
from tokenlife.adapters.keys import REFRESH_HISTORY_TTL_SECONDS, Keys
from tokenlife.adapters.refresh_history import RefreshHistory, parse_minute
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.settings import Settings

NOW = 1_800_000_000.0  # a minute boundary: 30_000_000 * 60


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-history-{uuid.uuid4().hex[:8]}")


async def test_a_batch_adds_to_its_minute_and_the_counters_in_one_go(
    redis: Redis, keys: Keys
) -> None:
    schedule = RefreshSchedule(redis, keys)
    await schedule.count({"refresh:google:refreshed": 2}, {"crm:refreshed": 2}, NOW + 5)
    await schedule.count({"refresh:google:refreshed": 1}, {"crm:refreshed": 1}, NOW + 50)
    await schedule.count({}, {"mail:transient_failure": 1, "crm:refreshed": 1}, NOW + 65)

    history = await RefreshHistory(redis, keys).read(NOW + 70)
    assert len(history) == 60 and history[-1].minute == int((NOW + 70) // 60)
    assert history[-2].counts == {("crm", "refreshed"): 3}
    assert history[-1].counts == {("crm", "refreshed"): 1, ("mail", "transient_failure"): 1}
    assert all(not m.counts for m in history[:-2])
    assert await redis.hget(keys.counters, "refresh:google:refreshed") == "3"
    ttl = await redis.ttl(keys.refreshes_in_minute(int(NOW // 60)))
    assert REFRESH_HISTORY_TTL_SECONDS - 5 <= ttl <= REFRESH_HISTORY_TTL_SECONDS


async def test_minutes_older_than_the_hour_are_not_read(redis: Redis, keys: Keys) -> None:
    schedule = RefreshSchedule(redis, keys)
    await schedule.count({}, {"crm:refreshed": 7}, NOW)
    later = await RefreshHistory(redis, keys).read(NOW + 3600)
    assert all(not m.counts for m in later)
    within = await RefreshHistory(redis, keys).read(NOW + 3599)
    assert within[0].counts == {("crm", "refreshed"): 7}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"crm:refreshed": "2"}, {("crm", "refreshed"): 2}),
        ({"crm:": "1", ":refreshed": "1"}, {}),  # half a name is no count
        ({}, {}),
    ],
)
def test_minute_fields_parse(fields: dict[str, str], expected: dict[tuple[str, str], int]) -> None:
    assert parse_minute(fields) == expected


async def test_a_dashboard_session_holds_neither_its_id_nor_the_key(
    redis: Redis, keys: Keys
) -> None:
    sessions = DashboardSessions(redis, keys, ttl_seconds=60)
    digest = bytes(range(32))
    session_id = await sessions.create(digest, NOW)
    found = await sessions.get(session_id)
    assert found is not None and found.key_digest == digest and len(found.csrf_token) >= 40
    stored = [k async for k in redis.scan_iter(f"{keys.prefix}:dashboard-session:*")]
    assert len(stored) == 1 and session_id not in stored[0]
    assert 0 < await redis.ttl(stored[0]) <= 60
    await sessions.set_notice(session_id, "done")
    assert await sessions.pop_notice(session_id) == "done"
    assert await sessions.pop_notice(session_id) is None
    await sessions.delete(session_id)
    assert await sessions.get(session_id) is None
    assert await sessions.get("never-issued") is None
