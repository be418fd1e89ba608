"""Beat's refresh ticks counted for the whole fleet, so one process logs one summary line a
period however many workers and pool processes ran the ticks (beat_quiet.py)."""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys
from tokenlife.beat_quiet import tally_period, tick_summary


class TickTallies:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def count(
        self, now: float, period: float, *, claimed: int, batches: int
    ) -> dict[str, Any] | None:
        """Add one tick to its period; the previous period's summary if this process is the
        first to ask for it (SET NX), else None. One round trip."""
        index = tally_period(now, period)
        ttl = math.ceil(2 * period) + 60
        current, previous = self._keys.tick_tally(index), self._keys.tick_tally(index - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(current, "ticks", 1)
            pipe.hincrby(current, "claimed", claimed)
            pipe.hincrby(current, "batches", batches)
            pipe.expire(current, ttl)
            pipe.set(self._keys.tick_summary(index - 1), "1", nx=True, ex=ttl)
            pipe.hgetall(previous)
            *_, first, counts = await pipe.execute()
        if not first:
            return None
        return tick_summary({_text(k): _text(v) for k, v in counts.items()}, index - 1, period)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
