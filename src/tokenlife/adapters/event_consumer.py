"""Reading the event stream: as one consumer of a consumer group, or following it plainly.

The entries are those `EventStream` writes: fields `type` and `data` (a JSON object).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tokenlife.adapters.keys import Keys

# XREADGROUP/XREAD replies as redis-py parses them with decode_responses=True.
_Reply = list[tuple[str, list[tuple[str, dict[str, str]]]]]


@dataclass(frozen=True, slots=True)
class StreamEntry:
    entry_id: str
    type: str
    data: dict[str, Any]


def parse_entry(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    return StreamEntry(entry_id=entry_id, type=fields["type"], data=json.loads(fields["data"]))


class EventConsumer:
    """One consumer of a consumer group. What it reads stays pending until acknowledged.

    The first reads return this consumer's pending entries (delivered before, never
    acknowledged), then new entries as they arrive.
    """

    def __init__(
        self, redis: Redis, keys: Keys, group: str, consumer: str, *, block_ms: int, count: int
    ) -> None:
        self._redis = redis
        self._key = keys.events
        self._group = group
        self._consumer = consumer
        self._block_ms = block_ms
        self._count = count
        # Reading from an id returns our pending entries after it; None once they are all read.
        self._pending_after: str | None = "0"

    async def create_group(self, start: str) -> None:
        """Create the group at `start` ("$": only new entries) unless it exists."""
        try:
            await self._redis.xgroup_create(self._key, self._group, id=start, mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def read(self) -> list[StreamEntry]:
        """The next entries: pending ones first, then new ones (waits up to block_ms)."""
        while self._pending_after is not None:
            entries = await self._read_group(self._pending_after, block=False)
            if not entries:
                self._pending_after = None
                break
            self._pending_after = entries[-1][0]
            delivered = await self._skip_trimmed(entries)
            if delivered:
                return delivered
        return await self._skip_trimmed(await self._read_group(">", block=True))

    async def ack(self, *entry_ids: str) -> None:
        if entry_ids:
            await self._redis.xack(self._key, self._group, *entry_ids)

    async def _read_group(self, after: str, *, block: bool) -> list[tuple[str, dict[str, str]]]:
        reply = cast(
            _Reply,
            await self._redis.xreadgroup(
                self._group,
                self._consumer,
                {self._key: after},
                count=self._count,
                block=self._block_ms if block else None,
            ),
        )
        return reply[0][1] if reply else []

    async def _skip_trimmed(self, entries: list[tuple[str, dict[str, str]]]) -> list[StreamEntry]:
        # A pending entry that MAXLEN trimmed (or XDEL removed) comes back with no fields.
        # There is nothing left to deliver, so it is acknowledged here, or it would stay
        # pending for good.
        gone = [entry_id for entry_id, fields in entries if not fields]
        await self.ack(*gone)
        return [parse_entry(entry_id, fields) for entry_id, fields in entries if fields]


class EventFollower:
    """Every entry after `since` ("$": only new ones), without a group: nothing is
    acknowledged, and nothing is remembered between runs."""

    def __init__(self, redis: Redis, keys: Keys, *, since: str, block_ms: int, count: int) -> None:
        self._redis = redis
        self._key = keys.events
        self._after = since
        self._block_ms = block_ms
        self._count = count

    async def read(self) -> list[StreamEntry]:
        """The next entries in stream order (waits up to block_ms; may return none)."""
        if self._after == "$":
            # "$" means "after the newest entry at the time of each call": reading with it
            # again after a timeout would skip what arrived in between. Pin it down once.
            newest = cast(list[tuple[str, Any]], await self._redis.xrevrange(self._key, count=1))
            self._after = newest[0][0] if newest else "0-0"
        reply = cast(
            _Reply,
            await self._redis.xread(
                {self._key: self._after}, count=self._count, block=self._block_ms
            ),
        )
        entries = reply[0][1] if reply else []
        if entries:
            self._after = entries[-1][0]
        return [parse_entry(entry_id, fields) for entry_id, fields in entries]
