"""Reading the event streams: as one consumer of a consumer group, or following them plainly.

Events are written to one stream per shard (adapters/keys.py: a connection's events go where
its writes go, in the same script). A reader reads every shard and merges what it got in
stream-id order, ties broken by shard. An entry's id names its shard, `<stream id>/<shard>`
("1764531234567-0/3"), because two shards' streams may give out the same stream id.

On one Redis a read waits for new entries with one blocking XREAD(GROUP) over every shard's
stream. A Redis Cluster refuses a command whose keys are in different slots, so there a
read asks every shard without blocking, in one pipeline, and waits a moment between empty
reads (POLL_SECONDS).

The entries are those `EventStream` writes: fields `type` and `data` (a JSON object).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import is_cluster

# How long an empty read of a Cluster's streams waits before asking again.
POLL_SECONDS = 0.2

log = logging.getLogger("tokenlife.events")

# XREADGROUP/XREAD replies as redis-py parses them with decode_responses=True.
_Reply = list[tuple[str, list[tuple[str, dict[str, str]]]]]
_Raw = list[tuple[str, dict[str, str] | None]]


@dataclass(frozen=True, slots=True)
class StreamEntry:
    entry_id: str  # "<stream id>/<shard>"
    type: str
    data: dict[str, Any]


def parse_entry(entry_id: str, fields: Mapping[str, str]) -> StreamEntry:
    return StreamEntry(entry_id=entry_id, type=fields["type"], data=json.loads(fields["data"]))


def qualified(stream_id: str, shard: int) -> str:
    return f"{stream_id}/{shard}"


def split_id(entry_id: str) -> tuple[str, int | None]:
    """(stream id, shard) of an entry id; shard None for a bare stream id."""
    stream_id, _, shard = entry_id.partition("/")
    return stream_id, int(shard) if shard else None


def order(entry_id: str) -> tuple[int, int, int]:
    """Where an entry id falls in the merged order."""
    stream_id, shard = split_id(entry_id)
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0), shard or 0


def positions(keys: Keys, since: str) -> dict[int, str]:
    """Each shard's position (read after it) for "read after `since`": "$" and "0" apply to
    every shard; a bare stream id too (entries of another shard in the same millisecond may
    be skipped); a qualified id exactly: a later shard's entry with the same stream id comes
    after it."""
    stream_id, shard = split_id(since)
    if shard is None or stream_id in ("$", "0"):
        return dict.fromkeys(keys.all_shards, stream_id)
    ms, seq, _ = order(since)
    before = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}" if ms else "0-0"
    return {s: stream_id if s <= shard else before for s in keys.all_shards}


def group_lost(exc: RedisError) -> bool:
    """Redis no longer has the consumer group (NOGROUP): it restarted without persistence,
    failed over to a replica that lacked it, was flushed, or the group was destroyed."""
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


def _stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def advance_pending(pending_after: dict[int, str], entries: _Raw) -> None:
    """After a read of a consumer's pending entries from the ids in `pending_after`: each
    shard moves on past the last entry it returned, and leaves once it returns none
    (reading from an id gives the consumer's pending entries after it)."""
    for shard in list(pending_after):
        mine = [entry_id for entry_id, _ in entries if split_id(entry_id)[1] == shard]
        if mine:
            pending_after[shard] = split_id(mine[-1])[0]
        else:
            del pending_after[shard]


def _merged(replies: Iterable[tuple[int, list[tuple[str, dict[str, str]]]]]) -> _Raw:
    found = [(qualified(entry_id, shard), fields) for shard, entries in replies
             for entry_id, fields in entries]  # fmt: skip
    return sorted(found, key=lambda entry: order(entry[0]))


class EventConsumer:
    """One consumer of a consumer group (a group per shard's stream, all of one name). What
    it reads stays pending until acknowledged.

    The first reads return this consumer's pending entries (delivered before, never
    acknowledged), then new entries as they arrive. A group Redis lost is created again
    (`recreate_group`), after the newest entry this consumer acknowledged on each shard.
    """

    def __init__(
        self, redis: Redis, keys: Keys, group: str, consumer: str, *, block_ms: int, count: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._group = group
        self._consumer = consumer
        self._block_ms = block_ms
        self._count = count
        # Reading from an id returns our pending entries after it; a shard leaves once its
        # pending entries are all read.
        self._pending_after = dict.fromkeys(keys.all_shards, "0")
        self._held: deque[StreamEntry] = deque()
        # The newest stream id this consumer acknowledged, by shard: where a lost group
        # starts again.
        self._acked: dict[int, str] = {}

    async def create_group(self, start: str) -> None:
        """Create the group at `start` ("$": only new entries) on each shard's stream
        unless it exists there."""
        for shard, position in positions(self._keys, start).items():
            await self._create_group(shard, position)

    async def recreate_group(self) -> None:
        """Create the group again where Redis lost it: on each shard after the newest entry
        this consumer acknowledged there, else at "0" (every entry still in the stream),
        never at "$" (what was written meanwhile would be skipped). Entries below that
        which were pending (another consumer's, or failed here) are not delivered again.
        A shard whose group exists (still, or made again by another consumer) is left."""
        for shard in self._keys.all_shards:
            await self._create_group(shard, self._acked.get(shard, "0"))
        self._pending_after = {}  # a new group holds nothing for anyone

    async def _create_group(self, shard: int, position: str) -> None:
        try:
            await self._redis.xgroup_create(
                self._keys.events(shard), self._group, id=position, mkstream=True
            )
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):  # it exists: leave it as it is
                raise

    async def read(self) -> list[StreamEntry]:
        """The next entries, at most `count`: pending ones first, then new ones (waits up to
        block_ms). Each shard is asked for `count`; what a read got beyond that (delivered
        to this consumer, so pending here until acknowledged) is kept for the next reads."""
        if not self._held:
            try:
                self._held.extend(await self._read())
            except RedisError as exc:
                if not group_lost(exc):
                    raise
                await self.recreate_group()
                log.warning("events: consumer group %s lost, recreated after the newest event "
                            "consumer %s acknowledged on each shard", self._group,
                            self._consumer)  # fmt: skip
                self._held.extend(await self._read())
        return [self._held.popleft() for _ in range(min(self._count, len(self._held)))]

    async def _read(self) -> list[StreamEntry]:
        while self._pending_after:
            entries = await self.read_group(dict(self._pending_after), block=False)
            advance_pending(self._pending_after, entries)
            delivered = await self._skip_trimmed(entries)
            if delivered:
                return delivered
        new = dict.fromkeys(self._keys.all_shards, ">")
        return await self._skip_trimmed(await self.read_group(new, block=True))

    async def ack(self, *entry_ids: str) -> None:
        by_shard: dict[int, list[str]] = {}
        for entry_id in entry_ids:
            stream_id, shard = split_id(entry_id)
            by_shard.setdefault(shard or 0, []).append(stream_id)
        if not by_shard:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.xack(self._keys.events(shard), self._group, *ids)
            await pipe.execute()
        for entry_id in entry_ids:
            self.note_acked(entry_id)

    def note_acked(self, entry_id: str) -> None:
        """Remember an entry acknowledged (by `ack` or another way) for `recreate_group`."""
        stream_id, shard = split_id(entry_id)
        shard = shard or 0
        if shard not in self._acked or _stream_order(stream_id) > _stream_order(self._acked[shard]):
            self._acked[shard] = stream_id

    async def read_group(self, after: dict[int, str], *, block: bool) -> _Raw:
        """The group's entries for this consumer from `after` (shard: position, ">" for new
        ones), merged in stream order; waits up to block_ms when `block`: one blocking read
        on one Redis, polling a Cluster's shards (which live on several servers)."""
        streams: dict[Any, Any] = {
            self._keys.events(shard): position for shard, position in after.items()
        }
        if block and not is_cluster(self._redis):
            reply = cast(_Reply, await self._redis.xreadgroup(
                self._group, self._consumer, streams, count=self._count, block=self._block_ms,
            ))  # fmt: skip
            shard_of = {self._keys.events(shard): shard for shard in after}
            return _merged((shard_of[key], entries) for key, entries in reply or [])
        waited = 0.0
        while True:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, position in streams.items():
                    pipe.xreadgroup(self._group, self._consumer, {key: position},
                                    count=self._count)  # fmt: skip
                replies = cast(list[_Reply], await pipe.execute())
            found = _merged(
                (shard, reply[0][1] if reply else [])
                for shard, reply in zip(after, replies, strict=True)
            )
            if found or not block or waited >= self._block_ms / 1000:
                return found
            await asyncio.sleep(POLL_SECONDS)
            waited += POLL_SECONDS

    async def _skip_trimmed(self, entries: _Raw) -> list[StreamEntry]:
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
        self._keys = keys
        self._after: dict[int, str] = positions(keys, since)
        self._held: deque[StreamEntry] = deque()
        self._waiting: list[StreamEntry] = []
        self._block_ms = block_ms
        self._count = count

    async def read(self) -> list[StreamEntry]:
        """The next entries in merged stream order, at most `count` (waits up to block_ms;
        may return none). Only up to the lowest point a shard that may hold more was read
        to. An entry id handed out is still no exact place to resume from: another shard
        may number an entry written later in the same millisecond before it (the streams
        number apart). services/event_feed.py hands out only entries older than the Redis
        clock for that. What waits comes at the next reads."""
        if not self._held:
            fetched = await self._read_all()
            # A shard that gave a whole `count` may hold more, from its last entry on: the
            # entries of the others past that point wait for it.
            per_shard: dict[int, list[StreamEntry]] = {}
            for entry in fetched:
                per_shard.setdefault(split_id(entry.entry_id)[1] or 0, []).append(entry)
            bounds = [order(got[-1].entry_id) for got in per_shard.values()
                      if len(got) >= self._count]  # fmt: skip
            merged = sorted([*self._waiting, *fetched], key=lambda e: order(e.entry_id))
            if bounds:
                bound = min(bounds)
                self._held.extend(e for e in merged if order(e.entry_id) <= bound)
                self._waiting = [e for e in merged if order(e.entry_id) > bound]
            else:
                self._held.extend(merged)
                self._waiting = []
        return [self._held.popleft() for _ in range(min(self._count, len(self._held)))]

    async def _read_all(self) -> list[StreamEntry]:
        if "$" in self._after.values():
            # "$" means "after the newest entry at the time of each call": reading with it
            # again after a timeout would skip what arrived in between. Pin it down once.
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in self._keys.all_shards:
                    pipe.xrevrange(self._keys.events(shard), count=1)
                newest = cast(list[list[tuple[str, Any]]], await pipe.execute())
            for shard, entries in zip(self._keys.all_shards, newest, strict=True):
                if self._after[shard] == "$":
                    self._after[shard] = entries[0][0] if entries else "0-0"
        found = await self._read()
        for entry_id, _ in found:
            stream_id, of = split_id(entry_id)
            self._after[of or 0] = stream_id
        return [parse_entry(entry_id, fields) for entry_id, fields in found if fields]

    async def _read(self) -> _Raw:
        streams: dict[Any, Any] = {
            self._keys.events(shard): after for shard, after in self._after.items()
        }
        shard_of = {key: shard for shard, key in enumerate(streams)}
        if not is_cluster(self._redis):
            reply = cast(
                _Reply, await self._redis.xread(streams, count=self._count, block=self._block_ms)
            )
            return _merged((shard_of[key], entries) for key, entries in reply or [])
        waited = 0.0
        while True:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, after in streams.items():
                    pipe.xread({key: after}, count=self._count)
                replies = cast(list[_Reply], await pipe.execute())
            found = _merged(
                (shard, reply[0][1] if reply else []) for shard, reply in enumerate(replies)
            )
            if found or waited >= self._block_ms / 1000:
                return found
            await asyncio.sleep(POLL_SECONDS)
            waited += POLL_SECONDS
