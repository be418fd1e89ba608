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
            page: list[str] = []
            async for connection_id in self._redis.sscan_iter(
                self._keys.connections(integration), count=_PAGE
            ):
                page.append(connection_id)
                if len(page) >= _PAGE:
                    corrupt += await self._read_page(integration, page, found)
                    page = []
            corrupt += await self._read_page(integration, page, found)
        return found, corrupt

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
