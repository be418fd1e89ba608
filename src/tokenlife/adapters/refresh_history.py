"""Refresh outcomes per minute, for "refreshes over the last hour" on the dashboard.

The counters hash (adapters/fleet_metrics.py) only grows, which is what Prometheus wants and
no good for "the last hour" without one. So each refresh batch also adds to the hash of the
minute it ended in (RefreshSchedule.count, the same pipelined round trip), fields
`{integration}:{outcome}`, and the hash expires after REFRESH_HISTORY_TTL_SECONDS. Reading an
hour is one pipeline of 60 HGETALLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    minute: int  # epoch seconds // 60
    counts: Mapping[tuple[str, str], int]  # (integration, outcome) -> refreshes


class RefreshHistory:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def read(self, now: float, minutes: int = 60) -> list[MinuteCounts]:
        """The `minutes` minutes up to and including the one `now` is in, oldest first."""
        last = int(now // 60)
        wanted = list(range(last - minutes + 1, last + 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for minute in wanted:
                pipe.hgetall(self._keys.refreshes_in_minute(minute))
            replies = cast(list[dict[str, str]], await pipe.execute())
        return [MinuteCounts(m, parse_minute(r)) for m, r in zip(wanted, replies, strict=True)]


def parse_minute(fields: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """`{integration}:{outcome}` fields as pairs; integration names hold no ':'. Pure."""
    counts: dict[tuple[str, str], int] = {}
    for name, value in fields.items():
        integration, _, outcome = name.partition(":")
        if integration and outcome:
            counts[(integration, outcome)] = int(value)
    return counts
