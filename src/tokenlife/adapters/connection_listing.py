"""A page of connections at a time, behind an opaque cursor: GET /api/connections.

The walk goes shard by shard. Without a status filter (and for `active`, the status most
connections have) it walks each integration's index of ids in the shard (a sorted set, all
scores 0) in id order. `degraded` and `reauthorization_required` are served from the shards'
indexes by stored status (move_counts.lua), not by reading every record. `degraded` is also
what readers see for an `active` connection whose access token has lapsed
(core.policy.effective_status), so its walk adds those too, from the shard's token
deadlines (scored by when each token lapses).

The cursor names the shard, the source and the last member returned: a page resumes after
it (ZRANGEBYLEX's exclusive start), so connections added or deleted meanwhile shift nothing.
A connection stored for the whole walk is listed exactly once; one written or deleted
meanwhile may or may not be; one whose status changes meanwhile may come twice or not at all
under a status filter.

A page reads at most a few times `limit` records, then returns what it found with a cursor,
so a page may hold fewer than `limit` connections even when more follow: a caller follows
`next_cursor` until it is None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.connection_record import Connection, parse_connection
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status
from tokenlife.errors import CorruptRecordError, DecryptionError, UsageError

# How many records one page may read, in multiples of its limit: a filter that matches
# little returns early with a cursor rather than walking the fleet in one request.
_READ_FACTOR = 4
_LAPSED = "lapsed"


@dataclass(frozen=True, slots=True)
class Page:
    connections: list[Connection]
    next_cursor: str | None


@dataclass(slots=True)
class _Position:
    """Where a walk stands: shard, source (an integration's position in the sorted list,
    an index, or the lapsed tokens) and the last member it returned there ("" for none;
    for the lapsed tokens, also that member's deadline)."""

    shard: int = 0
    source: int = 0
    after: str = ""
    score: float = 0.0

    def encode(self, cipher: Cipher) -> str:
        # Sealed: the last member read may be of an integration the caller's key doesn't
        # cover (the indexes and deadlines hold every integration of a shard), and a
        # cursor is never taken on trust.
        return cipher.encrypt(json.dumps([self.shard, self.source, self.after, self.score]))

    @classmethod
    def decode(cls, cursor: str | None, shards: int, cipher: Cipher) -> _Position:
        if not cursor or cursor == "0":  # "0": the start, as cursors of tokenlife < 0.12 began
            return cls()
        refused = UsageError("cursor is not one this API returned (or its key was removed)")
        try:
            shard, source, after, score = json.loads(cipher.decrypt(cursor))
        except (DecryptionError, ValueError, TypeError, UnicodeError):
            raise refused from None
        whole = type(shard) is int and type(source) is int and type(score) in (int, float)
        if not (whole and isinstance(after, str) and 0 <= shard < shards and source >= 0
                and math.isfinite(score)):  # fmt: skip
            raise refused
        return cls(shard, source, after, float(score))


class ConnectionListing:
    def __init__(self, redis: Redis, keys: Keys, cipher: Cipher) -> None:
        self._redis = redis
        self._keys = keys
        self._cipher = cipher

    async def page(
        self,
        integrations: Sequence[str],
        status: Status | None,
        now: float,
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        """Connections of `integrations` (as readers see them at `now`, with `status` when
        given), at most `limit`, from `cursor` on."""
        wanted = sorted(set(integrations))
        sources = self._sources(wanted, status)
        at = _Position.decode(cursor, self._keys.shards, self._cipher)
        found: list[Connection] = []
        budget = limit * _READ_FACTOR
        while at.shard < self._keys.shards and len(found) < limit and budget > 0:
            if at.source >= len(sources):
                at = _Position(at.shard + 1)
                continue
            source = sources[at.source]
            asked = min(limit - len(found), budget)
            batch = await self._read(source, at, now, asked)
            budget -= max(1, len(batch))
            records = await self._records([(integration, cid) for integration, cid, _ in batch])
            for (integration, cid, score), stored in zip(batch, records, strict=True):
                # Past this one, whether it is shown or not: the next page starts after it.
                at.after, at.score = self._keys.member(integration, cid), score
                if stored is not None and self._matches(stored, source, wanted, status, now):
                    found.append(stored.effective(now))
            if len(batch) < asked:
                at = _Position(at.shard, at.source + 1)  # this source is done
        done = at.shard >= self._keys.shards
        return Page(found, None if done else at.encode(self._cipher))

    @staticmethod
    def _matches(
        stored: Connection, source: str, wanted: list[str], status: Status | None, now: float
    ) -> bool:
        if stored.integration not in wanted:
            return False
        if source == _LAPSED and stored.status is not Status.ACTIVE:
            return False  # a stored degraded one comes from the degraded index
        return status is None or stored.effective(now).status is status

    @staticmethod
    def _sources(wanted: list[str], status: Status | None) -> list[str]:
        if status is Status.DEGRADED:
            return [Status.DEGRADED.value, _LAPSED]
        if status is Status.REAUTHORIZATION_REQUIRED:
            return [Status.REAUTHORIZATION_REQUIRED.value]
        return [f"ids:{name}" for name in wanted]

    async def _read(
        self, source: str, at: _Position, now: float, count: int
    ) -> list[tuple[str, str, float]]:
        """Up to `count` (integration, connection id, score) after the position, in order."""
        if source == _LAPSED:
            # Scheduled connections whose access token lapsed, by deadline then member:
            # those stored active read as degraded (the others come from the index).
            key = self._keys.token_deadlines(at.shard)
            low = repr(at.score) if at.after else "-inf"
            extra = 0
            while True:
                page = cast(list[tuple[str, float]], await self._redis.zrangebyscore(
                    key, low, repr(now), start=0, num=count + extra, withscores=True,
                ))  # fmt: skip
                # From the last deadline on: drop what came up to the last member returned.
                rest = [(m, s) for m, s in page if not (s == at.score and m <= at.after)]
                if rest or len(page) < count + extra:
                    break
                extra += count  # many tokens lapsed at the very same time: look further
            return [(*self._keys.parse_member(m), s) for m, s in rest[:count]]
        if source.startswith("ids:"):
            integration = source.removeprefix("ids:")
            key = self._keys.connections(integration, at.shard)
            low = f"({at.after.partition(':')[2]}" if at.after else "-"
            ids = cast(list[str], await self._redis.zrangebylex(key, low, "+", 0, count))
            return [(integration, cid, 0.0) for cid in ids]
        key = self._keys.status_index(at.shard, source)
        low = f"({at.after}" if at.after else "-"
        members = cast(list[str], await self._redis.zrangebylex(key, low, "+", 0, count))
        return [(*self._keys.parse_member(m), 0.0) for m in members]

    async def _records(self, members: list[tuple[str, str]]) -> list[Connection | None]:
        """Each member's record, None when it is gone (deleted since it was listed) or
        unreadable (the dashboard counts those)."""
        if not members:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for integration, connection_id in members:
                pipe.hgetall(self._keys.connection(integration, connection_id))
            records = cast(list[dict[str, str]], await pipe.execute())
        found: list[Connection | None] = []
        for raw in records:
            try:
                found.append(parse_connection(raw) if raw else None)
            except CorruptRecordError:
                found.append(None)
        return found
