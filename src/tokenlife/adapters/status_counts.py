"""Connections by integration and stored status, read in O(1): the scripts that write a
status (save_connection.lua, update_connection.lua, delete_connection.lua) move the
counts in the same step, so `/metrics` no longer reads every connection.

The counts are whole only once they were counted from the records: a deployment that
upgraded has records nobody counted. `_counted_at` in the hash says they were; without it a
read counts afresh (`recount`, one process at a time). A recount walks the records while
writes go on: a connection whose status changes during the walk can be off by one until
the next recount (`tokenlife connections recount`), which is why the walk is short and rare.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status

_COUNTED = "_counted_at"
_PAGE = 1000
# One recount at a time across the fleet; it walks every connection.
_RECOUNT_LOCK_SECONDS = 600


class StatusCounts:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def read(self, integrations: Iterable[str], now: float) -> dict[str, int]:
        """Connections of `integrations` by status; counted afresh first when the counts
        were never whole."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._keys.status_counts))
        if _COUNTED not in raw:
            await self.recount(now)
            raw = cast(dict[str, str], await self._redis.hgetall(self._keys.status_counts))
        wanted = set(integrations)
        counts = dict.fromkeys((s.value for s in Status), 0)
        for field, value in raw.items():
            integration, _, status = field.rpartition(":")
            if integration in wanted:
                counts[status] = counts.get(status, 0) + max(0, int(value))
        return counts

    async def recount(self, now: float) -> dict[str, int]:
        """Count every stored connection by integration and status and make that the counts
        (`_counted_at` = now); {field: count}. Integrations no longer configured are counted
        too: their records are still there."""
        lock = f"{self._keys.status_counts}:recounting"
        if not await self._redis.set(lock, repr(now), nx=True, ex=_RECOUNT_LOCK_SECONDS):
            return {}
        try:
            counted: dict[str, int] = {}
            async for key in self._redis.scan_iter(f"{self._keys.prefix}:conns:*", count=_PAGE):
                integration = str(key).removeprefix(f"{self._keys.prefix}:conns:")
                await self._count(integration, counted)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.status_counts)
                fields: dict[str, str] = {k: str(v) for k, v in counted.items()}
                fields[_COUNTED] = repr(now)
                pipe.hset(self._keys.status_counts, mapping=fields)  # type: ignore[arg-type]
                await pipe.execute()
            return counted
        finally:
            await self._redis.delete(lock)

    async def _count(self, integration: str, counted: dict[str, int]) -> None:
        page: list[str] = []
        async for connection_id in self._redis.sscan_iter(
            self._keys.connections(integration), count=_PAGE
        ):
            page.append(connection_id)
            if len(page) >= _PAGE:
                await self._statuses(integration, page, counted)
                page = []
        await self._statuses(integration, page, counted)

    async def _statuses(
        self, integration: str, connection_ids: list[str], counted: dict[str, int]
    ) -> None:
        if not connection_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for connection_id in connection_ids:
                pipe.hget(self._keys.connection(integration, connection_id), "status")
            statuses = await pipe.execute()
        for status in statuses:
            if status is not None:  # an id whose hash is gone is no connection
                field = f"{integration}:{status}"
                counted[field] = counted.get(field, 0) + 1
