"""Every connection of some integrations, read a page per round trip: the dashboard and the
listing of `tokenlife connections list` and GET /api/connections (services/connection_admin).

Token values stay encrypted: the records are parsed into Connection, which holds none.
O(connections) per read, like a /metrics scrape, in pages so that neither Redis nor one
reply gets large; the id sets are walked with SSCAN, so Redis is never held.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.connection_record import Connection, parse_connection
from tokenlife.adapters.keys import Keys
from tokenlife.errors import CorruptRecordError

_PAGE = 500


class ConnectionScan:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def read(self, integrations: Iterable[str]) -> tuple[list[Connection], int]:
        """The stored connections (as stored: callers apply `effective`), and how many
        records were half-written or unreadable (left out)."""
        found: list[Connection] = []
        corrupt = 0
        for integration in integrations:
            for shard in self._keys.all_shards:
                page: list[str] = []
                async for connection_id, _ in self._redis.zscan_iter(
                    self._keys.connections(integration, shard), count=_PAGE
                ):
                    page.append(connection_id)
                    if len(page) >= _PAGE:
                        corrupt += await self._read_page(integration, page, found)
                        page = []
                corrupt += await self._read_page(integration, page, found)
        return found, corrupt

    async def count(self, integration: str) -> int:
        """How many connections `integration` has: each shard's set, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.zcard(self._keys.connections(integration, shard))
            return sum(int(n) for n in await pipe.execute())

    async def ids(self, integration: str) -> dict[int, list[str]]:
        """The connection ids of `integration` by shard, sorted (whole indexes: for the few
        connections a per-integration action reads; a listing walks with `read`)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.zrange(self._keys.connections(integration, shard), 0, -1)
            replies = await pipe.execute()
        return {shard: sorted(str(m) for m in members)
                for shard, members in zip(self._keys.all_shards, replies, strict=True)
                if members}  # fmt: skip

    async def _read_page(self, integration: str, ids: list[str], found: list[Connection]) -> int:
        if not ids:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for connection_id in ids:
                pipe.hgetall(self._keys.connection(integration, connection_id))
            records = cast(list[dict[str, str]], await pipe.execute())
        corrupt = 0
        for raw in records:
            if not raw:
                continue  # deleted since it was listed
            try:
                found.append(parse_connection(raw))
            except CorruptRecordError:
                corrupt += 1
        return corrupt
