"""RefreshSchedule against the real Redis: due work is claimed once and leased, never twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis

from tests.support import put_on_schedule, wait_until
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.refresh_schedule import Due, RefreshSchedule
from tokenlife.settings import Settings

# Claims read Redis's clock (TIME), the same machine's: due times are set relative to now.
NOW = time.time()
LEASE = 300.0


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(settings: Settings) -> Keys:
    # A schedule of its own: no other test's members are ever due here.
    return Keys(f"{settings.key_prefix}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def schedule(redis: Redis, keys: Keys) -> RefreshSchedule:
    return RefreshSchedule(redis, keys)


@pytest.fixture
async def other_clients(settings: Settings) -> AsyncIterator[list[Redis]]:
    """Extra connections, as separate worker processes would have."""
    clients = [Redis.from_url(settings.redis_url, decode_responses=True) for _ in range(3)]
    yield clients
    for client in clients:
        await client.aclose()


async def score(redis: Redis, keys: Keys, integration: str, connection_id: str) -> float | None:
    value = await redis.zscore(
        keys.schedule_of(integration, connection_id), keys.member(integration, connection_id)
    )
    return None if value is None else float(value)


async def scheduled(redis: Redis, keys: Keys) -> int:
    """How many connections every shard's schedule holds."""
    return sum([await redis.zcard(keys.schedule(shard)) for shard in keys.all_shards])


def in_shard(keys: Keys, integration: str, shard: int, prefix: str = "conn") -> str:
    """A new connection id of `integration` whose keys are in `shard`."""
    while True:
        cid = new_name(prefix)
        if keys.shard(integration, cid) == shard:
            return cid


def leased(value: float | None, since: float, lease: float = LEASE) -> bool:
    """A score that is a lease of `lease` seconds taken between `since` and now."""
    return value is not None and since + lease - 0.01 <= value <= time.time() + lease + 0.01


async def test_claim_due_returns_only_due_members_with_their_due_scores(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    integration, now = new_name("it"), time.time()
    due_at = {"long-overdue": now - 3600, "just-due": now - 0.5, "exactly-now": now}
    not_yet = {"in-a-minute": now + 60, "tomorrow": now + 86400}
    for cid, at in (due_at | not_yet).items():
        await put_on_schedule(redis, keys, integration, cid, at)

    claimed = await schedule.claim_due(LEASE, limit=100)

    # Soonest due first, whichever shards they are in.
    assert claimed == [
        Due(integration, cid, at) for cid, at in sorted(due_at.items(), key=lambda i: i[1])
    ]
    for cid in due_at:
        assert leased(await score(redis, keys, integration, cid), now), cid
    for cid, at in not_yet.items():
        assert await score(redis, keys, integration, cid) == at, f"{cid} was touched"


async def test_claim_due_takes_at_most_limit_the_longest_overdue_first(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    """A shard with more due than its share of the limit gives the rest of the limit when
    the other shards had less: a claim still takes `limit` when the work is uneven."""
    integration = new_name("it")
    ids = [in_shard(keys, integration, 6) for _ in range(20)]
    for i, cid in enumerate(ids):
        await put_on_schedule(redis, keys, integration, cid, NOW - 100 + i)

    claimed = await schedule.claim_due(LEASE, limit=keys.shards)

    assert claimed == [
        Due(integration, cid, NOW - 100 + i) for i, cid in enumerate(ids[: keys.shards])
    ]
    for i, cid in enumerate(ids[keys.shards :], start=keys.shards):
        assert await score(redis, keys, integration, cid) == NOW - 100 + i


async def test_a_claim_never_takes_more_than_its_limit(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    """Below the shard count too: the shares of the limit add up to it."""
    integration = new_name("it")
    for shard in keys.all_shards:
        for _ in range(2):
            cid = in_shard(keys, integration, shard)
            await put_on_schedule(redis, keys, integration, cid, NOW)

    for limit in (4, 1, 5):
        claimed = await schedule.claim_due(LEASE, limit=limit)
        assert len(claimed) == limit, claimed
    assert len(await schedule.claim_due(LEASE, limit=100)) == 2 * keys.shards - 10


async def test_one_claim_takes_due_connections_of_every_shard_soonest_first(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    """Every shard is asked in one pipeline; what they give comes back soonest due first,
    whichever shard it came from. Past the limit, each shard gives in proportion to what it
    has due, and what it kept stays due, untouched, for the next claims."""
    integration = new_name("it")
    # Shard 3 has 16 due, 14 other shards one each (shard 14 the most overdue): of 30 due,
    # a limit of 15 takes shard 3's share (16 x 15 / 30 = 8) and the remainder, one each
    # from the shards with more due than their share (shard 3 among them), from the turn.
    in_3 = [in_shard(keys, integration, 3) for _ in range(16)]
    in_14 = in_shard(keys, integration, 14)
    due_at = {in_14: NOW - 500}
    due_at |= {cid: NOW - 200 + n for n, cid in enumerate(in_3)}
    for shard in keys.all_shards:
        if shard not in (3, 14, 15):
            due_at[in_shard(keys, integration, shard)] = NOW - 100 + shard
    for cid, at in due_at.items():
        await put_on_schedule(redis, keys, integration, cid, at)

    first = await schedule.claim_due(LEASE, limit=15)

    assert len(first) == 15
    assert [d.due_at for d in first] == sorted(d.due_at for d in first)
    assert all(d.due_at == due_at[d.connection_id] for d in first)
    from_3 = [d.connection_id for d in first if d.connection_id in in_3]
    # Each shard claims its soonest due: shard 3's first 8 (or 9, with one of the remainder).
    assert from_3 == in_3[: len(from_3)] and len(from_3) in (8, 9)
    for cid in set(due_at) - {d.connection_id for d in first}:
        assert await score(redis, keys, integration, cid) == due_at[cid]  # untouched
    rest = await schedule.claim_due(LEASE, limit=15)
    assert len(rest) == 15
    assert {d.connection_id for d in first} | {d.connection_id for d in rest} == set(due_at)
    assert await schedule.claim_due(LEASE, limit=15) == []


async def test_a_second_claim_at_the_same_time_finds_nothing(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    integration = new_name("it")
    for i in range(5):
        await put_on_schedule(redis, keys, integration, f"conn-{i}", NOW - i)
    assert len(await schedule.claim_due(LEASE, limit=100)) == 5

    assert await schedule.claim_due(LEASE, limit=100) == []


async def test_after_the_lease_the_same_members_come_due_again(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    """A worker that crashed holding a claim loses it when the lease ends."""
    integration = new_name("it")
    ids = [f"conn-{i}" for i in range(3)]
    for i, cid in enumerate(ids):
        await put_on_schedule(redis, keys, integration, cid, NOW - 10 * i)
    await schedule.claim_due(0.3, limit=100, min_lease_seconds=0.1)
    assert await schedule.claim_due(0.3, limit=100, min_lease_seconds=0.1) == []

    reclaimed: list[Due] = []
    await wait_until(lambda: _claim_into(schedule, reclaimed), timeout=5, what="the lease to end")

    assert sorted(d.connection_id for d in reclaimed) == ids
    for due in reclaimed:  # handed out with the lease end as their due time
        assert NOW < due.due_at <= time.time()


async def _claim_into(schedule: RefreshSchedule, claimed: list[Due]) -> bool:
    claimed += await schedule.claim_due(0.3, limit=100, min_lease_seconds=0.1)
    return len(claimed) >= 3


async def test_a_lease_is_half_the_time_the_token_has_left_within_bounds(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    """A connection whose worker died comes due again before its token lapses."""
    integration, now = new_name("it"), time.time()
    left = {"lapses-in-60s": 60.0, "lapses-in-a-day": 86400.0, "lapsed": -5.0, "unknown": None}
    for cid, seconds in left.items():
        await put_on_schedule(redis, keys, integration, cid, now - 1)
        if seconds is not None:
            await redis.zadd(
                keys.token_deadlines(keys.shard(integration, cid)),
                {keys.member(integration, cid): now + seconds},
            )

    await schedule.claim_due(LEASE, limit=100, min_lease_seconds=15)

    assert leased(await score(redis, keys, integration, "lapses-in-60s"), now, 30.0)
    assert leased(await score(redis, keys, integration, "lapses-in-a-day"), now, LEASE)
    assert leased(await score(redis, keys, integration, "lapsed"), now, 15.0)
    assert leased(await score(redis, keys, integration, "unknown"), now, LEASE)


async def test_concurrent_claims_hand_out_every_member_exactly_once(
    schedule: RefreshSchedule, redis: Redis, keys: Keys, other_clients: list[Redis]
) -> None:
    integrations = [new_name("it") for _ in range(4)]
    members = {keys.member(integrations[i % 4], f"conn-{i}"): NOW - (i % 997) for i in range(2000)}
    async with redis.pipeline(transaction=False) as pipe:
        for member, at in members.items():
            pipe.zadd(keys.schedule_of(*keys.parse_member(member)), {member: at})
        await pipe.execute()
    schedules = [schedule, *(RefreshSchedule(client, keys) for client in other_clients)]
    limit = 200

    batches = await asyncio.gather(
        *(schedules[i % len(schedules)].claim_due(LEASE, limit=limit) for i in range(20))
    )

    assert all(len(batch) <= limit for batch in batches)
    counts = Counter(keys.member(d.integration, d.connection_id) for b in batches for d in b)
    twice = [member for member, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} members claimed more than once, e.g. {twice[:5]}"
    assert counts.keys() == members.keys(), f"{len(members) - len(counts)} members never claimed"
    for batch in batches:
        for due in batch:
            assert due.due_at == members[keys.member(due.integration, due.connection_id)]
    scores: list[float] = []
    for shard in keys.all_shards:
        entries = await redis.zrange(keys.schedule(shard), 0, -1, withscores=True)
        scores += [score for _, score in cast(list[tuple[str, float]], entries)]
    assert len(scores) == 2000 and all(leased(score, NOW) for score in scores)


async def test_reschedule_moves_a_connection_and_a_claim_keeps_it(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    integration, NOW = new_name("it"), time.time()
    member = keys.member(integration, "conn-a")
    await put_on_schedule(redis, keys, integration, "conn-a", NOW + 60)
    await put_on_schedule(redis, keys, integration, "conn-b", NOW + 120)
    assert await score(redis, keys, integration, "conn-a") == NOW + 60
    assert await scheduled(redis, keys) == 2

    await schedule.reschedule(integration, "conn-a", NOW - 1)  # moves, adds nothing
    assert await redis.zscore(keys.schedule_of(integration, "conn-a"), member) == NOW - 1
    assert await scheduled(redis, keys) == 2
    assert await schedule.claim_due(LEASE, limit=100) == [Due(integration, "conn-a", NOW - 1)]
    assert await scheduled(redis, keys) == 2  # a claim leases, it does not remove


@pytest.mark.parametrize("connection_id", ["tenant:user:42", "plain", ":leading", "trailing:"])
def test_member_and_parse_member_round_trip(connection_id: str) -> None:
    member = Keys.member("it", connection_id)

    assert Keys.parse_member(member) == ("it", connection_id)


async def test_a_connection_id_with_colons_comes_back_whole_from_a_claim(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    integration = new_name("it")
    await put_on_schedule(redis, keys, integration, "tenant:user:42", NOW)

    assert await schedule.claim_due(LEASE, limit=100) == [Due(integration, "tenant:user:42", NOW)]


async def test_reschedule_never_puts_back_a_connection_taken_off_since(
    schedule: RefreshSchedule, redis: Redis, keys: Keys
) -> None:
    integration = new_name("it")
    await schedule.reschedule(integration, "gone", NOW + 5)  # was never on it
    assert await scheduled(redis, keys) == 0
    await put_on_schedule(redis, keys, integration, "gone", NOW)
    assert await scheduled(redis, keys) == 1
    await schedule.forget(integration, "gone")
    assert await scheduled(redis, keys) == 0
    await schedule.reschedule(integration, "gone", NOW + 5)
    assert await scheduled(redis, keys) == 0
