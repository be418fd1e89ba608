"""Pages of the event streams for readers that come back with a position (GET /api/events).

A page is read with the EventFollower (adapters/event_consumer.py) from the reader's
position, and hands out only *settled* entries: older than the Redis clock (TIME) read
before the page. Why: XADD numbers each shard's stream by the server's clock in
milliseconds, and the streams number apart, each from sequence 0 in a new millisecond. An
entry written to one shard later in the same millisecond can sort before one of another
shard already handed out, and a reader resuming after that one would skip it (pages of the
follower alone lost up to 57 of 12,000 events written by eight writers meanwhile). An entry
of a millisecond before TIME answered was written before it, so the read after sees it;
every entry written later has a later millisecond. On a Redis Cluster the shards live on
several servers: each is asked for TIME, and the earliest answer counts.

The page ends at the newest settled entry (`newest`), found before the read: the follower
is then asked only for entries that exist, and doesn't block (a blocking XREAD that finds
nothing waits for Redis's timer, 100 ms at the default `hz` 10, even when asked for 1 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tokenlife.adapters.event_consumer import (
    EventFollower,
    StreamEntry,
    order,
    qualified,
    split_id,
)
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import is_cluster
from tokenlife.core import events

# The types tokenlife emits (docs/events.md); tests/e2e/test_api_events.py keeps it whole.
EVENT_TYPES = frozenset({
    events.CONNECTION_AUTHORIZED, events.REFRESH_TOKEN_MISSING, events.LIFETIME_UNKNOWN,
    events.EXCHANGE_FAILED, events.EXCHANGE_FAILED_ALERT, events.TOKEN_REFRESHED,
    events.CONNECTION_RECOVERED, events.REAUTHORIZATION_REQUIRED, events.REFRESH_FAILING,
    events.ACCESS_TOKEN_EXPIRING, events.CONFIGURATION, events.CONNECTION_DELETED,
    events.INTEGRATION_AVAILABLE, events.CLIENT_SECRET_EXPIRING, events.CLIENT_SECRET_EXPIRED,
    events.CLIENT_SECRET_ACCEPTED, events.PROVIDER_DEGRADED, events.PROVIDER_RECOVERED,
})  # fmt: skip

# Entries one page reads at most, shown or not: a key that may see few of the events, or a
# narrow `types`, moves on by this many per request instead of holding it for a backlog.
SCAN_LIMIT = 10_000
# Entries the follower asks each shard for at once when a page may skip some.
_FILTERED_READ_COUNT = 100
_U64 = 2**64 - 1

Admits = Callable[[StreamEntry], bool]


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[StreamEntry]
    next_after: str  # where the next page starts: the last entry read, shown or not
    gap: bool  # entries after the position were trimmed before they could be read
    more: bool  # settled entries past next_after were left for the next page
    unsettled: bool  # entries of the current millisecond wait past next_after


class EventFeed:
    def __init__(self, redis: Redis, keys: Keys, max_length: int) -> None:
        self._redis = redis
        self._keys = keys
        self._max_length = max_length

    async def newest(self) -> tuple[str, bool]:
        """The newest settled entry ("0" when there is none), and whether entries newer
        than that exist already (of the current millisecond, unsettled)."""
        cluster = is_cluster(self._redis)
        clock = await self._cluster_clock_ms() if cluster else 0
        async with self._redis.pipeline(transaction=False) as pipe:
            if not cluster:
                pipe.time()  # answered before the heads are read: one round trip for both
            for shard in self._keys.all_shards:
                pipe.xrevrange(self._keys.events(shard), count=1)
            replies = await pipe.execute()
        if not cluster:
            seconds, micros = replies.pop(0)
            clock = int(seconds) * 1000 + int(micros) // 1000
        heads = cast(list[list[tuple[str, Any]]], replies)
        found: dict[int, str] = {}
        late = []
        for shard, head in zip(self._keys.all_shards, heads, strict=True):
            if not head:
                continue
            if order(head[0][0])[0] < clock:
                found[shard] = head[0][0]
            else:
                late.append(shard)
        if late:  # the newest entry of these shards is of this millisecond: the one before
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in late:
                    pipe.xrevrange(self._keys.events(shard), max=f"({clock}-0", count=1)
                before = cast(list[list[tuple[str, Any]]], await pipe.execute())
            found |= {shard: got[0][0] for shard, got in zip(late, before, strict=True) if got}
        positions = [qualified(stream_id, shard) for shard, stream_id in found.items()]
        return max(positions, key=order, default="0"), bool(late)

    async def page(
        self, after: str, limit: int, admits: Admits, *, check_gap: bool, filtered: bool = True
    ) -> EventPage:
        """The entries after position `after` that `admits` lets through, at most `limit`
        of them, reading at most SCAN_LIMIT entries. `check_gap`: say whether entries after
        `after` were trimmed first (not for "0", the oldest kept). `filtered`: `admits` may
        refuse entries, so reading more than `limit` at once saves round trips."""
        newest, unsettled = await self.newest()
        if order(newest) <= order(after):
            return EventPage([], after, gap=False, more=False, unsettled=unsettled)
        # The follower asks every shard for `count` entries: only the first `limit` of the
        # merged ones make the page when every entry is shown.
        count = max(limit, _FILTERED_READ_COUNT) if filtered else limit
        follower = EventFollower(self._redis, self._keys, since=after, block_ms=1, count=count)
        shown: list[StreamEntry] = []
        firsts: dict[int, str] = {}  # the first entry read of each shard
        position, read, end = after, 0, order(newest)
        reached_end = False
        while not reached_end and len(shown) < limit and read < SCAN_LIMIT:
            batch = await follower.read()
            reached_end = not batch  # only if `newest` was deleted meanwhile
            for entry in batch:
                if order(entry.entry_id) > end:
                    reached_end = True
                    break
                position, read = entry.entry_id, read + 1
                firsts.setdefault(split_id(entry.entry_id)[1] or 0, entry.entry_id)
                if admits(entry) and len(shown) < limit:
                    shown.append(entry)
                if len(shown) == limit or read == SCAN_LIMIT:
                    break
            reached_end = reached_end or order(position) >= end
        gap = check_gap and await self._trimmed(firsts)
        return EventPage(shown, position, gap=gap, more=not reached_end, unsettled=unsettled)

    async def _trimmed(self, firsts: dict[int, str]) -> bool:
        """Whether a page began a shard at its oldest kept entry, of a stream that MAXLEN
        trimmed: the entries it had between the page's position and that one, if any, were
        trimmed unread. A shard the page read nothing of had nothing after the position
        (trimming keeps the newest entries), and one with an entry before the first read
        had nothing trimmed after the position. (XINFO's max-deleted-entry-id follows XDEL
        only, not trimming.)"""
        if not firsts:
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, entry_id in firsts.items():
                before = f"({split_id(entry_id)[0]}"
                pipe.xrevrange(self._keys.events(shard), max=before, count=1)
            earlier = await pipe.execute()
        oldest = [shard for shard, got in zip(firsts, earlier, strict=True) if not got]
        if not oldest:
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in oldest:
                pipe.xinfo_stream(self._keys.events(shard))
            infos = await pipe.execute(raise_on_error=False)
        for info in infos:
            if not isinstance(info, dict):
                continue  # trimmed to nothing meanwhile: the next page tells
            # Redis 7 counts every entry ever added; 6.2 doesn't, and a stream at its cap
            # has been trimmed (approximate MAXLEN keeps at least that many).
            added = info.get("entries-added")
            length = int(info["length"])
            if int(added) > length if added is not None else length >= self._max_length:
                return True
        return False

    async def _cluster_clock_ms(self) -> int:
        cluster = cast(RedisCluster, self._redis)
        replies = await cluster.execute_command("TIME", target_nodes=RedisCluster.PRIMARIES)
        times = replies.values() if isinstance(replies, dict) else [replies]
        return min(int(seconds) * 1000 + int(micros) // 1000 for seconds, micros in times)


def parse_position(value: str, shards: int) -> str:
    """A reader's `after` as a position the follower reads from: "0", or a stream entry id
    as tokenlife hands them out (`<stream id>/<shard>`); a bare stream id applies to every
    shard. Raises ValueError, saying what is wrong."""
    stream_id, slash, shard_text = value.partition("/")
    ms_text, dash, seq_text = stream_id.partition("-")
    parts = [ms_text, *([seq_text] if dash else []), *([shard_text] if slash else [])]
    if not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts):
        raise ValueError(
            "must be 0 or an event id as this API hands them out, e.g. 1764531234567-0/3"
        )
    ms, seq = int(ms_text), int(seq_text or 0)
    if ms > _U64 or seq > _U64:
        raise ValueError("is out of range: a stream id is two 64-bit numbers")
    if value == "0" or (ms, seq) == (0, 0):
        return "0"
    if not slash:  # every shard after that stream id: as if read to the last shard
        return f"{ms}-{seq}/{shards - 1}"
    if int(shard_text) >= shards:
        raise ValueError(f"names shard {int(shard_text)}; this deployment has {shards}")
    return f"{ms}-{seq}/{int(shard_text)}"
