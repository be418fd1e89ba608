"""The refresh schedule: a sorted set per shard of connections scored by when to look at them.

Not Celery ETA: with a Redis broker a countdown longer than the visibility timeout is
delivered again and again. We claim due work from this set ourselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from random import Random
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import MIN_LEASE_SECONDS, REFRESH_HISTORY_TTL_SECONDS, Keys


@dataclass(frozen=True, slots=True)
class Due:
    integration: str
    connection_id: str
    due_at: float


class RefreshSchedule:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._claim = scripts.register(redis, "claim_due")
        self._pull_forward = scripts.register(redis, "pull_forward")
        self._turn = 0

    async def claim_due(
        self, lease_seconds: float, limit: int, min_lease_seconds: float = MIN_LEASE_SECONDS
    ) -> list[Due]:
        """Take up to `limit` connections due by Redis's clock, each leased for half the time
        its token has left, within [min_lease_seconds, lease_seconds]. Two round trips: how
        many are due in each shard (ZCOUNT, O(log n) each), then each shard with any due is
        asked for its share of `limit` in proportion (each shard's claim is atomic, a node
        each on a Cluster). Soonest due first; never more than `limit`."""
        shortest = min(min_lease_seconds, lease_seconds)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                # A second ahead of this clock: one a little behind Redis's still counts
                # what the claim (by Redis's clock) will find due.
                pipe.zcount(self._keys.schedule(shard), "-inf", repr(time.time() + 1))
            due = [int(n) for n in await pipe.execute()]
        # Round-robin start: the remainder of a proportional split goes to other shards at
        # each tick.
        self._turn = (self._turn + 1) % self._keys.shards
        shares = _shares(due, limit, self._turn)
        if not shares:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, share in shares:
                await self._claim(
                    keys=[self._keys.schedule(shard), self._keys.token_deadlines(shard)],
                    args=[repr(lease_seconds), repr(shortest), share],
                    client=pipe,
                )
            replies = await scripts.execute(pipe)
        claimed = []
        for flat in replies:
            for member, score in zip(flat[::2], flat[1::2], strict=True):
                integration, connection_id = self._keys.parse_member(member)
                claimed.append(Due(integration, connection_id, float(score)))
        claimed.sort(key=lambda due: due.due_at)
        return claimed

    def shard_of(self, integration: str, connection_id: str) -> int:
        return self._keys.shard(integration, connection_id)

    async def count(self, totals: dict[str, int], minute: dict[str, int], now: float) -> None:
        """Add to the running totals, and `minute` (fields `{integration}:{outcome}`) to the
        bucket of the minute `now` falls in (adapters/refresh_history.py), in one round trip."""
        if not totals and not minute:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, amount in totals.items():
                pipe.hincrby(self._keys.counters, name, amount)
            if minute:
                bucket = self._keys.refreshes_in_minute(int(now // 60))
                for name, amount in minute.items():
                    pipe.hincrby(bucket, name, amount)
                pipe.expire(bucket, REFRESH_HISTORY_TTL_SECONDS)
            await pipe.execute()

    async def tick(self, now: float, claimed: int) -> None:
        """A beat tick ran: the heartbeat (kept a minute) and the claim count, one trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._keys.heartbeat, repr(now), ex=60)
            if claimed:
                pipe.hincrby(self._keys.counters, "refresh:claimed", claimed)
            await pipe.execute()

    async def reschedule(self, integration: str, connection_id: str, due_at: float) -> None:
        """Move a connection that is on the schedule; XX: never put back one that a delete
        or an unschedule took off since it was claimed."""
        await self._redis.zadd(
            self._keys.schedule_of(integration, connection_id),
            {self._keys.member(integration, connection_id): due_at},
            xx=True,
        )

    async def forget(self, integration: str, connection_id: str) -> None:
        """A claimed connection whose record is gone leaves the schedule for good."""
        await self._redis.zrem(
            self._keys.schedule_of(integration, connection_id),
            self._keys.member(integration, connection_id),
        )

    async def pull_forward(
        self, provider: str, shard: int, limit: int, spread: float, rng: Random, least_wait: float
    ) -> int:
        """The provider answers again: its `limit` longest-waiting retries in `shard` (the
        shard of the connection that showed it: every shard's successes pull its own), of
        connections that last failed `least_wait` seconds ago or more, come due within
        `spread` seconds (at random, so they don't arrive at once; never before a
        Retry-After). How many moved."""
        backoff = self._keys.backoff(provider, shard)
        members = cast(list[str], await self._redis.zrevrange(backoff, 0, limit - 1))
        if not members:
            return 0
        keys, args = [backoff, self._keys.schedule(shard)], [repr(least_wait)]
        for member in members:
            integration, connection_id = self._keys.parse_member(member)
            keys += [self._keys.connection(integration, connection_id),
                     self._keys.lock(integration, connection_id)]  # fmt: skip
            args += [member, repr(spread * rng.random())]
        return int(await self._pull_forward(keys=keys, args=args))


def _shares(due: list[int], limit: int, turn: int) -> list[tuple[int, int]]:
    """(shard, how many to claim) for the shards with any due: all of them when they fit in
    `limit`, else each in proportion to what it has due, the remainder one each from
    `turn` on. The count was read a moment before the claim (Redis's clock then, ours
    here: a connection that comes due between the two waits for the next tick)."""
    total = sum(due)
    if total <= limit:
        return [(shard, n) for shard, n in enumerate(due) if n]
    shares = [n * limit // total for n in due]
    left = limit - sum(shares)
    for i in range(len(due)):
        shard = (turn + i) % len(due)
        if left and due[shard] > shares[shard]:
            shares[shard] += 1
            left -= 1
    return [(shard, n) for shard, n in enumerate(shares) if n]
