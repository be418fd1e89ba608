"""TickTallies against the real Redis: ticks of many processes, one summary a period."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.tick_tally import TickTallies
from tokenlife.settings import Settings


async def test_one_process_of_many_logs_each_period_with_everyones_ticks(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(f"{settings.key_prefix}-{uuid.uuid4().hex[:8]}")
    processes = [TickTallies(redis, keys) for _ in range(4)]  # 2 replicas x 2 pool processes
    # Period [600, 660): each process ticks twice.
    for n, process in enumerate(processes * 2):
        assert await process.count(600.0 + n, 60, claimed=n, batches=1) is None
    # Period [660, 720): all four tick at once; exactly one gets [600, 660)'s summary.
    got = await asyncio.gather(*(p.count(661.0, 60, claimed=0, batches=0) for p in processes))
    summaries = [s for s in got if s is not None]
    assert summaries == [
        {"ticks": 8, "claimed": sum(range(8)), "batches": 8, "seconds": 60,
         "period_start": "1970-01-01T00:10:00+00:00"},
    ]  # fmt: skip
    assert 0 < await redis.ttl(keys.tick_tally(11)) <= 180
    # A period nobody ticked in has no summary.
    assert await processes[0].count(900.0, 60, claimed=0, batches=0) is None
