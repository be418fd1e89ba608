"""Connections by integration and stored status, read in O(1): the scripts that write a
status (save_connection.lua, update_connection.lua, delete_connection.lua) move the
counts in the same step (move_counts.lua), so `/metrics` no longer reads every connection.

The counts are whole only once they were counted from the records: a deployment that
upgraded has records nobody counted. `_counted_at` in the hash says they were; without it a
read counts them first. A recount walks the records while writes go on and loses none:
it counts into shadow counts, page by page in one script each, marking what it counted;
from its start every status write also moves the shadow of a connection already counted
(or counts one saved before the walk reaches it), and at the end the shadow replaces the
counts. One recount at a time, under a flag with a TTL the walk keeps renewing.

Each shard keeps its own counts (its connections' scripts write only its keys); a read adds
the shards' hashes up, in one round trip, and a recount walks one shard after another.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status

log = logging.getLogger(__name__)

_COUNTED = "_counted_at"
_PAGE = 1000
# The walk renews the flag at every page; a recounting process that died frees it after.
_FLAG_TTL_MS = 60_000


class CountsIncomplete(Exception):
    """The counts are not whole yet (another process is counting them): try again."""


class StatusCounts:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._page = scripts.register(redis, "count_statuses")
        self._finish = scripts.register(redis, "finish_recount")
        self._release = scripts.register(redis, "release_lock")

    async def read(self, integrations: Iterable[str], now: float) -> dict[str, int]:
        """Connections of `integrations` by status; counted first when the counts were
        never whole; CountsIncomplete while another process counts them."""
        shards = await self._shards()
        if any(_COUNTED not in raw for raw in shards):
            if await self.recount(now) is None:
                raise CountsIncomplete("connections are being counted; try again shortly")
            shards = await self._shards()
        wanted = set(integrations)
        counts = dict.fromkeys((s.value for s in Status), 0)
        for raw in shards:
            for field, value in raw.items():
                integration, _, status = field.rpartition(":")
                if integration not in wanted:
                    continue
                if int(value) < 0:
                    log.warning(
                        "connections of %s with status %s count %s in a shard; run "
                        "`tokenlife connections recount`", integration, status, value,
                    )  # fmt: skip
                counts[status] = counts.get(status, 0) + max(0, int(value))
        return counts

    async def _shards(self) -> list[dict[str, str]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.hgetall(self._keys.status_counts(shard))
            return cast(list[dict[str, str]], await pipe.execute())

    async def recount(self, now: float) -> dict[str, int] | None:
        """Count every stored connection by integration and status afresh and make that
        the counts, shard by shard; {integration:status: count}, or None when another
        recount runs. Integrations no longer configured are counted too: their records are
        still there."""
        total: dict[str, int] = {}
        for shard in self._keys.all_shards:
            counted = await self._recount_shard(shard, now)
            if counted is None:
                return None
            for name, amount in counted.items():
                total[name] = total.get(name, 0) + amount
        return total

    async def _recount_shard(self, shard: int, now: float) -> dict[str, int] | None:
        counts, flag, walked, shadow, *_ = self._keys.status_count_keys(shard)
        token = secrets.token_hex(16)
        if not await self._redis.set(flag, token, nx=True, px=_FLAG_TTL_MS):
            return None
        try:
            await self._redis.delete(walked, shadow)
            head = self._keys.connections("", shard)
            async for key in self._redis.scan_iter(f"{head}*", count=_PAGE):
                if not await self._walk(shard, str(key).removeprefix(head), token):
                    return None
            if not await self._finish(keys=[flag, walked, shadow, counts], args=[token, repr(now)]):
                return None
            raw = cast(dict[str, str], await self._redis.hgetall(counts))
            return {k: int(v) for k, v in raw.items() if k != _COUNTED}
        finally:
            # Left behind only when the walk stopped: a finished recount deleted it.
            await self._release(keys=[flag], args=[token])

    async def _walk(self, shard: int, integration: str, token: str) -> bool:
        page: list[str] = []
        async for connection_id, _ in self._redis.zscan_iter(
            self._keys.connections(integration, shard), count=_PAGE
        ):
            page.append(connection_id)
            if len(page) >= _PAGE:
                if not await self._count(shard, integration, page, token):
                    return False
                page = []
        return await self._count(shard, integration, page, token)

    async def _count(
        self, shard: int, integration: str, connection_ids: list[str], token: str
    ) -> bool:
        if not connection_ids:
            return True
        _, flag, walked, shadow, degraded, reauthorization = self._keys.status_count_keys(shard)
        keys = [flag, walked, shadow, degraded, reauthorization]
        keys += [self._keys.connection(integration, c) for c in connection_ids]
        args = [token, str(_FLAG_TTL_MS), integration]
        args += [self._keys.member(integration, c) for c in connection_ids]
        counted = await self._page(keys=keys, args=args)
        return int(counted) >= 0
