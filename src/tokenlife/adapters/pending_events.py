"""A consumer group's entries as a consumer that handles them takes them: its own pending
entries first (delivered before, never acknowledged), then new ones, and entries left idle
by any consumer of the group (a dead one, or itself after a failure), claimed with
XAUTOCLAIM; the entries it still holds kept from being claimed, with how often each was
delivered (keep_events.lua: XPENDING, then XCLAIM JUSTID, in one step); and the group's
dead letters, written with the acknowledgement in one MULTI on the entry's shard.

Unlike `EventConsumer`, a read returns everything it fetched (up to `count` per shard),
held by nothing else: every entry this consumer holds is one its caller knows of and keeps.
The shards are merged in stream order as adapters/event_consumer.py does: one blocking
XREADGROUP over every shard's stream on one Redis; a pipeline and a short poll on a Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.event_consumer import (
    EventConsumer,
    StreamEntry,
    advance_pending,
    order,
    parse_entry,
    qualified,
    split_id,
)
from tokenlife.adapters.keys import Keys

# Dead letters kept per shard and group (approximate MAXLEN, as the event streams): a
# handler failing on every event must not grow Redis without bound.
DEAD_LETTERS_MAX_LENGTH = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    letter_id: str  # "<stream id>/<shard>" in the dead letters' stream
    entry_id: str  # the event's entry id in the event stream
    type: str
    data: dict[str, Any]
    consumer: str
    handler: str
    error: str
    deliveries: int
    dead_lettered_at: str


class PendingEvents:
    def __init__(
        self, redis: Redis, keys: Keys, group: str, consumer: str, *, block_ms: int, count: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._group = group
        self._consumer = consumer
        self._block_ms = block_ms
        self._count = count
        self._cursors = dict.fromkeys(keys.all_shards, "0-0")
        # Reading from an id returns our pending entries after it; a shard leaves once its
        # pending entries are all read.
        self._pending_after = dict.fromkeys(keys.all_shards, "0")
        self._group_of = EventConsumer(redis, keys, group, consumer, block_ms=block_ms,
                                       count=count)  # fmt: skip
        self._keep = scripts.register(redis, "keep_events")

    async def create_group(self, start: str) -> None:
        await self._group_of.create_group(start)

    async def recreate_group(self) -> None:
        """The group again, after Redis lost it (EventConsumer.recreate_group): it holds
        nothing for this consumer, and the claims start over."""
        await self._group_of.recreate_group()
        self._pending_after = {}
        self._cursors = dict.fromkeys(self._keys.all_shards, "0-0")

    async def own_pending(self) -> list[StreamEntry]:
        """The next of this consumer's pending entries as they were when it started (up to
        `count` per shard, oldest first; their delivery count goes up by one); none once
        every one was returned."""
        while self._pending_after:
            found = await self._group_of.read_group(dict(self._pending_after), block=False)
            advance_pending(self._pending_after, found)
            entries = await self._entries(found)
            if entries:
                return entries
        return []

    async def read_new(self) -> list[StreamEntry]:
        """Entries no consumer of the group got yet; waits up to block_ms for one."""
        new = dict.fromkeys(self._keys.all_shards, ">")
        return await self._entries(await self._group_of.read_group(new, block=True))

    async def claim_idle(self, min_idle_ms: int) -> list[StreamEntry]:
        """Entries some consumer of the group has held unacknowledged for `min_idle_ms`,
        now this consumer's (their delivery count goes up by one). Each shard is scanned on
        from where the last call stopped, so a long pending list is taken a page at a time.
        Entries trimmed from the stream meanwhile are dropped from the group by Redis."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.xautoclaim(self._keys.events(shard), self._group, self._consumer,
                                min_idle_time=min_idle_ms, start_id=self._cursors[shard],
                                count=self._count)  # fmt: skip
            replies = cast(list[list[Any]], await pipe.execute())
        found: list[tuple[str, dict[str, str] | None]] = []
        for shard, reply in zip(self._keys.all_shards, replies, strict=True):
            self._cursors[shard] = str(reply[0])
            found += [(qualified(entry_id, shard), fields) for entry_id, fields in reply[1]]
        return await self._entries(found)

    async def keep(self, entry_ids: Iterable[str]) -> dict[str, int]:
        """Reset the idle time of the entries this consumer still holds, so no XAUTOCLAIM
        takes them, and say how often each was delivered (their delivery count stays). An
        entry acknowledged meanwhile, or claimed by another consumer, is left to it and out
        of the answer. One script per shard, on the shard's stream (one Cluster slot)."""
        by_shard = _by_shard(entry_ids)
        kept: dict[str, int] = {}
        for shard, ids in by_shard.items():
            reply = cast(list[Any], await self._keep(
                keys=[self._keys.events(shard)], args=[self._group, self._consumer, *ids],
            ))  # fmt: skip
            for stream_id, delivered in zip(reply[::2], reply[1::2], strict=True):
                kept[qualified(str(stream_id), shard)] = int(delivered)
        return kept

    async def ack(self, entry_ids: Iterable[str]) -> None:
        await self._group_of.ack(*entry_ids)

    async def dead_letter(
        self, entry: StreamEntry, *, handler: str, error: str, deliveries: int, now_iso: str
    ) -> None:
        """Copy the entry to the group's dead letters and acknowledge it, in one step."""
        stream_id, shard = split_id(entry.entry_id)
        shard = shard or 0
        letter = {"entry_id": entry.entry_id, "type": entry.type,
                  "data": json.dumps(entry.data, separators=(",", ":")),
                  "consumer": self._consumer, "handler": handler, "error": error,
                  "deliveries": str(deliveries), "dead_lettered_at": now_iso}  # fmt: skip
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._keys.event_dead_letters(shard, self._group), letter,  # type: ignore[arg-type]
                      maxlen=DEAD_LETTERS_MAX_LENGTH, approximate=True)  # fmt: skip
            pipe.xack(self._keys.events(shard), self._group, stream_id)
            await pipe.execute()
        self._group_of.note_acked(entry.entry_id)

    async def _entries(self, found: Iterable[Any]) -> list[StreamEntry]:
        # A pending entry that MAXLEN trimmed comes back without fields: nothing is left to
        # handle, so it is acknowledged here, or it would stay pending for good.
        ordered = sorted(found, key=lambda entry: order(entry[0]))
        await self.ack(entry_id for entry_id, fields in ordered if not fields)
        return [parse_entry(entry_id, fields) for entry_id, fields in ordered if fields]


class DeadLetters:
    """The dead letters of one group, every shard's, merged newest first."""

    def __init__(self, redis: Redis, keys: Keys, group: str) -> None:
        self._redis = redis
        self._keys = keys
        self._group = group

    async def list(self, limit: int) -> list[DeadLetter]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.xrevrange(self._keys.event_dead_letters(shard, self._group), count=limit)
            replies = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        letters = [_letter(qualified(letter_id, shard), fields)
                   for shard, entries in zip(self._keys.all_shards, replies, strict=True)
                   for letter_id, fields in entries]  # fmt: skip
        letters.sort(key=lambda letter: order(letter.letter_id), reverse=True)
        return letters[:limit]

    async def remove(self, letter_ids: Iterable[str]) -> int:
        by_shard = _by_shard(letter_ids)
        if not by_shard:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.xdel(self._keys.event_dead_letters(shard, self._group), *ids)
            return sum(cast(list[int], await pipe.execute()))


def _letter(letter_id: str, fields: Mapping[str, str]) -> DeadLetter:
    return DeadLetter(
        letter_id=letter_id,
        entry_id=fields.get("entry_id", ""),
        type=fields.get("type", ""),
        data=json.loads(fields.get("data", "{}")),
        consumer=fields.get("consumer", ""),
        handler=fields.get("handler", ""),
        error=fields.get("error", ""),
        deliveries=int(fields.get("deliveries", "0")),
        dead_lettered_at=fields.get("dead_lettered_at", ""),
    )


def _by_shard(entry_ids: Iterable[str]) -> dict[int, list[str]]:
    by_shard: dict[int, list[str]] = {}
    for entry_id in entry_ids:
        stream_id, shard = split_id(entry_id)
        by_shard.setdefault(shard or 0, []).append(stream_id)
    return by_shard
