"""How the keys under a prefix are laid out, checked at start-up, and moved to another layout.

`{prefix}:layout` (a hash) records the shard count the connections were written with. A
process whose TOKENLIFE_REDIS_SHARDS disagrees, or that finds connections of the layout
before shards (`{prefix}:conn:...`, tokenlife before issue 12) and no record, refuses to start:
it would not find them. `tokenlife connections reshard` moves every connection, its schedule
entry, token deadline and backoff entry, and every pending authorization, into the layout the
setting names, then counts the connections afresh and records the layout.

Moving is done with every worker and API process stopped (the command refuses while beat's
heartbeat is fresh): a refresh that wrote the old key meanwhile would be lost. Events in the
old streams are not moved: let alert delivery read them first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tokenlife.adapters.keys import ALERT_GROUP, MAX_SHARDS, Keys
from tokenlife.adapters.status_counts import StatusCounts

_PAGE = 500
_RESHARDING = "resharding"


class LayoutMismatch(Exception):
    """The stored keys are laid out otherwise than the settings say; the message says how
    to move them."""


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a connection and its entries are in a layout found in Redis: before shards
    (`shards` None) or with another shard count (whose keys never coincide with this
    layout's: a tag names its count, adapters/keys.py)."""

    prefix: str
    shards: int | None

    @property
    def _keys(self) -> Keys | None:
        return None if self.shards is None else Keys(self.prefix, self.shards)

    def _flat(self, rest: str) -> str:
        return f"{self.prefix}:{rest}"

    def connection_pattern(self) -> str:
        keys = self._keys
        return self._flat("conn:*") if keys is None else keys.layout_pattern("conn:*")

    def parse(self, key: str) -> tuple[str, str] | None:
        keys = self._keys
        if keys is not None:
            return keys.connection_named(key)
        integration, _, connection_id = key.removeprefix(self._flat("conn:")).partition(":")
        return (integration, connection_id) if connection_id else None

    def schedule(self, integration: str, cid: str) -> str:
        keys = self._keys
        return self._flat("schedule") if keys is None else keys.schedule_of(integration, cid)

    def deadlines(self, integration: str, cid: str) -> str:
        keys = self._keys
        if keys is None:
            return self._flat("deadlines")
        return keys.token_deadlines(keys.shard(integration, cid))

    def conns(self, integration: str, cid: str) -> str:
        keys = self._keys
        if keys is None:
            return self._flat(f"conns:{integration}")
        return keys.connections(integration, keys.shard(integration, cid))

    def backoff(self, provider: str, integration: str, cid: str) -> str:
        keys = self._keys
        if keys is None:
            return self._flat(f"backoff:{provider}")
        return keys.backoff(provider, keys.shard(integration, cid))

    def leftovers(self) -> list[str]:
        """Patterns of this layout's keys beside the connections, deleted once they moved:
        indexes, counts, held sets, locks (the event streams stay: see the module)."""
        names = ["schedule", "deadlines", "conns:*", "backoff:*", "status-counts*",
                 "breaker-held:*", "lock:*"]  # fmt: skip
        keys = self._keys
        if keys is None:
            return [self._flat(name) for name in names]
        shard_only = ["breaker-gate:*", "by-status:*", "unused"]
        return [keys.layout_pattern(name) for name in [*names, *shard_only]]

    def pending_patterns(self) -> list[tuple[str, str]]:
        keys = self._keys
        if keys is None:
            return [(self._flat(f"{kind}:*"), kind) for kind in ("pending", "exchanging")]
        return [(keys.layout_pattern(f"{kind}:*"), kind) for kind in ("pending", "exchanging")]


@dataclass(slots=True)
class Moved:
    connections: int = 0
    pending: int = 0
    from_layouts: list[str] = field(default_factory=list)


class KeyLayout:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def stored(self) -> int | None:
        """The shard count on record; None when nothing is recorded."""
        raw = await self._redis.hget(self._keys.layout, "shards")
        return None if raw is None else int(raw)

    async def check(self) -> None:
        """At start-up: record the layout on a fresh Redis, else make sure it is this one."""
        if await self._redis.hget(self._keys.layout, _RESHARDING):
            raise LayoutMismatch(
                "`tokenlife connections reshard` is moving the connections (or stopped "
                "part-way): let it finish, or run it again"
            )
        stored = await self.stored()
        if stored is None:
            # Keys every deployment before shards with a connection had: one round trip,
            # not a SCAN of a Redis that may hold millions of keys.
            prefix = self._keys.prefix
            if await self._redis.exists(f"{prefix}:schedule", f"{prefix}:status-counts",
                                        f"{prefix}:deadlines", f"{prefix}:events"):  # fmt: skip
                raise LayoutMismatch(
                    f"Redis holds connections under {self._keys.prefix!r} in the layout of "
                    "tokenlife before shards: stop every tokenlife process and run "
                    "`tokenlife connections reshard` once, then start them again"
                )
            await self._redis.hsetnx(self._keys.layout, "shards", self._keys.shards)
            stored = await self.stored()
        if stored != self._keys.shards:
            raise LayoutMismatch(
                f"the connections under {self._keys.prefix!r} are spread over {stored} shards "
                f"but TOKENLIFE_REDIS_SHARDS is {self._keys.shards}: set it back to {stored}, "
                "or stop every tokenlife process and run `tokenlife connections reshard` to "
                f"move them to {self._keys.shards}"
            )

    async def reshard(self, now: float) -> Moved:
        """Move everything of the layouts found into this one (idempotent: run it again
        after a stop part-way)."""
        moved = Moved()
        stored = await self.stored()
        # Every shard count a run has moved between, kept until a run ends: one stopped
        # part-way may have moved connections to a target this run no longer has (the
        # setting changed again), so each such count is a source now.
        recorded = str(await self._redis.hget(self._keys.layout, _RESHARDING) or "")
        counts = {int(n) for n in recorded.split(",") if n.strip().isdigit()}
        counts = {n for n in counts if 1 <= n <= MAX_SHARDS}
        counts |= {stored} if stored is not None else set()
        every = ",".join(str(n) for n in sorted(counts | {self._keys.shards}))
        await self._redis.hset(self._keys.layout, _RESHARDING, every)
        sources = [_Source(self._keys.prefix, None)]
        sources += [_Source(self._keys.prefix, n) for n in sorted(counts - {self._keys.shards})]
        for source in sources:
            count = await self._move_connections(source)
            count_pending = await self._move_pending(source)
            if count or count_pending:
                moved.from_layouts.append(
                    "before shards" if source.shards is None else f"{source.shards} shards"
                )
            moved.connections += count
            moved.pending += count_pending
            for pattern in source.leftovers():
                async for key in self._scan(pattern):
                    await self._redis.delete(key)
        await StatusCounts(self._redis, self._keys).recount(now)
        await self._alert_groups()
        await self._redis.hset(self._keys.layout, "shards", self._keys.shards)
        await self._redis.hdel(self._keys.layout, _RESHARDING)
        return moved

    async def _move_connections(self, source: _Source) -> int:
        moved = 0
        async for key in self._scan(source.connection_pattern()):
            named = source.parse(key)
            if named is None or key == self._keys.connection(*named):
                continue
            await self._move_one(source, key, *named)
            moved += 1
        return moved

    async def _move_one(self, source: _Source, key: str, integration: str, cid: str) -> None:
        fields = cast(dict[str, str], await self._redis.hgetall(key))
        member = Keys.member(integration, cid)
        provider = fields.get("provider", "")
        old_schedule, old_deadlines = (
            source.schedule(integration, cid),
            source.deadlines(integration, cid),
        )
        old_backoff = source.backoff(provider, integration, cid)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zscore(old_schedule, member)
            pipe.zscore(old_deadlines, member)
            pipe.zscore(old_backoff, member)
            due, deadline, backoff = await pipe.execute()
        shard = self._keys.shard(integration, cid)
        # One shard's keys: one slot, so a transaction even on a Cluster.
        async with self._redis.pipeline(transaction=True) as pipe:
            target = self._keys.connection(integration, cid)
            pipe.delete(target)
            if fields:
                pipe.hset(target, mapping=cast(dict[Any, Any], fields))
                pipe.zadd(self._keys.connections(integration, shard), {cid: 0})
                if due is not None:
                    pipe.zadd(self._keys.schedule(shard), {member: due})
                if deadline is not None:
                    pipe.zadd(self._keys.token_deadlines(shard), {member: deadline})
                if backoff is not None and provider:
                    pipe.zadd(self._keys.backoff(provider, shard), {member: backoff})
            await pipe.execute()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            pipe.zrem(old_schedule, member)
            pipe.zrem(old_deadlines, member)
            # Before shards the index was a set; since, a sorted set (ordered pages).
            if source.shards is None:
                pipe.srem(source.conns(integration, cid), cid)
            else:
                pipe.zrem(source.conns(integration, cid), cid)
            pipe.zrem(old_backoff, member)
            await pipe.execute()

    async def _move_pending(self, source: _Source) -> int:
        """Pending authorizations and exchange claims, with their TTLs: a state is found by
        its own shard (Keys.state_shard), so it moves by it."""
        moved = 0
        for pattern, kind in source.pending_patterns():
            async for key in self._scan(pattern):
                state = key.rpartition(f":{kind}:")[2]
                target = getattr(self._keys, kind)(state)
                if key == target:
                    continue
                # The TTL first: a key that expires between the two is gone from DUMP too,
                # never restored without a TTL. (DUMP's bytes need a call of their own:
                # redis-py decodes replies inside a pipeline.)
                ttl = await self._redis.pttl(key)
                dumped = await self._redis.dump(key)
                if dumped is None or int(ttl) == -2:
                    continue  # expired meanwhile
                # -1: no TTL, restored without one (0); else the TTL it had left.
                await self._redis.restore(target, max(0, int(ttl)), dumped, replace=True)
                await self._redis.delete(key)
                moved += 1
        return moved

    async def _alert_groups(self) -> None:
        """Alert delivery's consumer group on every shard's stream, from its start: the
        group is otherwise created at "$" by delivery's first run, and an alert a worker
        emits before that run would never be delivered."""
        for shard in self._keys.all_shards:
            try:
                await self._redis.xgroup_create(
                    self._keys.events(shard), ALERT_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        async for key in self._redis.scan_iter(match=pattern, count=_PAGE):
            yield key.decode() if isinstance(key, bytes) else str(key)
