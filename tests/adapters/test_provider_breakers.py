"""The provider breakers in the real Redis: counting outcomes over the sliding window, opening
once (for one caller), holding scheduled claims while open with one probe per interval,
closing on a probe's answer, and releasing the held refreshes soonest-lapsing first. Times
are the caller's: each test passes its own `now`."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import cast

import pytest
from redis.asyncio import Redis

from tests.adapters.test_claim import in_shard, new_name, saved
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import Claim, ClaimKind, Locks
from tokenlife.adapters.provider_breakers import Hold, ProviderBreakers
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.provider_breaker import BreakerPolicy
from tokenlife.core.tokens import TokenSet

POLICY = BreakerPolicy(min_failures=10, failure_rate=0.5, window_seconds=60, probe_seconds=30,
                       pause_seconds=600, recovery_rate=10)  # fmt: skip
T0 = 1_800_000_000.0


@pytest.fixture
def breakers(redis: Redis, keys: Keys) -> ProviderBreakers:
    return ProviderBreakers(redis, keys)


async def schedule_of(redis: Redis, keys: Keys) -> dict[str, float]:
    """Every shard's schedule, merged."""
    due: dict[str, float] = {}
    for shard in keys.all_shards:
        pairs = await redis.zrange(keys.schedule(shard), 0, -1, withscores=True)
        due |= dict(cast(list[tuple[str, float]], pairs))
    return due


def first_probe(now: float, shard: int, keys: Keys) -> float:
    """When a breaker opened at `now` first lets a claim of `shard` through as its probe:
    the shards' first probes are staggered over one interval."""
    return now + POLICY.probe_seconds * (1 + shard / keys.shards)


async def saved_in(
    store: TokenStore, keys: Keys, provider: str, shard: int, *, expires_in: float | None = None
) -> tuple[str, str, TokenSet]:
    """A stored connection of `provider` whose keys are in `shard`."""
    integration = new_name("it")
    return await saved(store, provider, integration=integration, expires_in=expires_in,
                       connection_id=in_shard(keys, integration, shard))  # fmt: skip


async def stored_due(redis: Redis, key: str) -> float:
    return float(cast(str, await redis.hget(key, "next_refresh_at")))


async def record(
    breakers: ProviderBreakers, scope: str, now: float, *, ok: int = 0, probe_ok: int = 0,
    probe_failed: int = 0, **failures: int,
) -> str:  # fmt: skip
    change = await breakers.record(scope, now, POLICY, answered=ok, probe_answered=probe_ok,
                                   failures=failures, probe_failures=probe_failed)  # fmt: skip
    return change.state


async def test_opens_at_the_count_and_the_rate_and_only_the_call_that_crossed_says_so(
    breakers: ProviderBreakers, redis: Redis, keys: Keys
) -> None:
    scope = new_name("host")
    # Nine failures: below the count, however high the rate.
    assert await record(breakers, scope, T0, timeout=9) == "closed"
    # Many answers keep the rate below one half: ten failures of thirty-one do not open it.
    assert await record(breakers, scope, T0 + 1, ok=21) == "closed"
    assert await record(breakers, scope, T0 + 2, http_503=1) == "closed"
    change = await breakers.record(scope, T0 + 3, POLICY, answered=0, probe_answered=0,
                                   failures={"http_503": 12})  # fmt: skip
    # 22 failures of 43 outcomes: both thresholds crossed.
    assert change.state == "opened"
    assert (round(change.failures), round(change.answered)) == (22, 21)
    assert change.kinds == {"timeout": 9, "http_503": 13}
    assert await breakers.open_scopes() == [scope]
    # Already open: later failures report it open, never "opened" again.
    assert await record(breakers, scope, T0 + 4, timeout=50) == "open"
    assert await redis.sismember(keys.breakers_open, scope)


async def test_the_window_slides_so_old_failures_fade_out(breakers: ProviderBreakers) -> None:
    scope = new_name("host")
    assert await record(breakers, scope, T0, timeout=9) == "closed"
    # A window and a half later the first bucket counts half: 4.5 + 5 < 10.
    assert await record(breakers, scope, T0 + 90, timeout=5) == "closed"
    # Two windows after its start nothing of the first bucket is left.
    assert await record(breakers, scope, T0 + 240, timeout=9) == "closed"
    assert await record(breakers, scope, T0 + 241, timeout=1) == "opened"


async def test_only_a_probes_answer_closes_it(breakers: ProviderBreakers, redis: Redis,
                                              keys: Keys) -> None:  # fmt: skip
    scope = new_name("host")
    assert await record(breakers, scope, T0, timeout=20) == "opened"
    # An answer to a refresh sent before it opened says nothing about now.
    assert await record(breakers, scope, T0 + 1, ok=5) == "open"
    # A probe failed, beside two refreshes in flight since before it opened.
    assert await record(breakers, scope, T0 + 31, timeout=3, probe_failed=1) == "open"
    change = await breakers.record(scope, T0 + 61, POLICY, answered=0, probe_answered=1,
                                   failures={})  # fmt: skip
    assert change.state == "recovered"
    assert change.opened_at == T0
    assert change.probes_failed == 1
    assert await breakers.open_scopes() == []
    assert not await redis.exists(keys.breaker(scope))
    # Closed again, and counting from nothing.
    assert await record(breakers, scope, T0 + 62, timeout=9) == "closed"


async def test_an_open_breaker_holds_scheduled_claims_and_lets_one_probe_per_interval(
    breakers: ProviderBreakers, locks: Locks, store: TokenStore, redis: Redis, keys: Keys,
) -> None:  # fmt: skip
    provider, scope, shard = new_name("provider"), new_name("host"), 5
    now = time.time()
    # One shard's connections: each shard holds and probes on its own.
    conns = [await saved_in(store, keys, provider, shard, expires_in=3600) for _ in range(4)]
    assert await record(breakers, scope, now, timeout=20) == "opened"
    probe_at = first_probe(now, shard, keys)

    def hold(at: float) -> Hold:
        return Hold(scope, at, POLICY.probe_seconds, POLICY.pause_seconds)

    kinds = [(await locks.claim(i, c, provider, 50, None, hold(now + 1))).kind
             for i, c, _ in conns]  # fmt: skip
    assert kinds == [ClaimKind.HELD] * 4
    # Nothing held stays locked, and every one is in the held set.
    for i, c, _ in conns:
        assert not await redis.exists(keys.lock(i, c))
    held = cast(list[str], await redis.zrange(keys.breaker_held(scope, shard), 0, -1))
    assert sorted(held) == sorted(keys.member(i, c) for i, c, _ in conns)
    # The first held is booked for the shard's first probe (opened at `now`, probe 30 s
    # later, staggered by shard), the others wait out the pause (600 s, jittered by the
    # caller; none here).
    due = await schedule_of(redis, keys)
    first = keys.member(conns[0][0], conns[0][1])
    assert due[first] == pytest.approx(probe_at + 0.5, abs=0.01)
    for i, c, _ in conns[1:]:
        assert due[keys.member(i, c)] == pytest.approx(now + 1 + 600, abs=0.01)

    # Just before the probe time a claim is held; at it one claim goes ahead as the probe;
    # the next is held again.
    i, c, _ = conns[0]
    assert (await locks.claim(i, c, provider, 50, None, hold(probe_at - 0.5))).kind == "held"
    probe = await locks.claim(i, c, provider, 50, None, hold(probe_at + 1))
    assert probe.kind is ClaimKind.OK and probe.probe
    # The probe leaves the held set, and books the next held one for the next probe.
    assert keys.member(i, c) not in await redis.zrange(keys.breaker_held(scope, shard), 0, -1)
    nxt = cast(list[str], await redis.zrange(keys.breaker_held(scope, shard), 0, 0))[0]
    # Paced by the probe times: the next one 30 s after this one was due (probe_at), not
    # after it came (probe_at + 1).
    assert await redis.zscore(keys.schedule(shard), nxt) == pytest.approx(probe_at + 30.5, abs=0.01)
    i2, c2, _ = conns[1]
    held_again = await locks.claim(i2, c2, provider, 50, None, hold(probe_at + 2))
    assert held_again.kind is ClaimKind.HELD
    # A refresh someone asks for now is never held.
    asked = await locks.claim(i2, c2, provider, 50, None, None)
    assert asked.kind is ClaimKind.OK and not asked.probe


async def test_a_held_lapsed_connection_keeps_its_lock_for_the_status_write(
    breakers: ProviderBreakers, locks: Locks, store: TokenStore, redis: Redis, keys: Keys
) -> None:
    """Else a refresh asked for meanwhile would save on a version the status write moves,
    and its rotated refresh token would be lost."""
    provider, scope = new_name("provider"), new_name("host")
    now = time.time()
    lapsed = await saved(store, provider, expires_in=-60)
    fresh = await saved(store, provider, expires_in=3600)
    assert await record(breakers, scope, now, timeout=20) == "opened"
    hold = Hold(scope, now + 1, POLICY.probe_seconds, POLICY.pause_seconds)

    held = await locks.claim(lapsed[0], lapsed[1], provider, 50, None, hold)
    assert held.kind is ClaimKind.HELD and held.lease is not None
    assert not held.lease.released
    assert await redis.exists(keys.lock(lapsed[0], lapsed[1]))
    # Someone asking now waits for it: the lock is taken.
    assert (await locks.claim(lapsed[0], lapsed[1], provider, 50, None, None)).kind == "locked"
    await locks.give_back(held.lease)
    assert not await redis.exists(keys.lock(lapsed[0], lapsed[1]))

    other = await locks.claim(fresh[0], fresh[1], provider, 50, None, hold)
    assert other.kind is ClaimKind.HELD and other.lease is not None and other.lease.released
    assert not await redis.exists(keys.lock(fresh[0], fresh[1]))


async def test_a_probe_books_the_next_one_past_held_members_that_are_gone(
    breakers: ProviderBreakers, locks: Locks, store: TokenStore, redis: Redis, keys: Keys
) -> None:
    provider, scope, shard = new_name("provider"), new_name("host"), 3
    now = time.time()
    probe = await saved_in(store, keys, provider, shard, expires_in=3600)
    waiting = await saved_in(store, keys, provider, shard, expires_in=3600)
    next_one = keys.member(waiting[0], waiting[1])
    gone = keys.member("gone", in_shard(keys, "gone", shard))
    assert await record(breakers, scope, now, timeout=20) == "opened"
    # Deleted while held: in the held set, lapsing soonest, no longer on the schedule.
    await redis.zadd(keys.breaker_held(scope, shard), {gone: 1, next_one: 5})

    probe_at = first_probe(now, shard, keys)
    hold = Hold(scope, probe_at + 1, POLICY.probe_seconds, POLICY.pause_seconds)
    claim = await locks.claim(probe[0], probe[1], provider, 50, None, hold)

    assert claim.kind is ClaimKind.OK and claim.probe
    schedule = keys.schedule(shard)
    assert await redis.zscore(schedule, next_one) == pytest.approx(probe_at + 30.5, abs=0.01)
    assert await redis.zrange(keys.breaker_held(scope, shard), 0, -1) == [next_one]
    assert await redis.zscore(schedule, gone) is None


async def test_a_breaker_that_expired_open_leaves_the_open_set(
    breakers: ProviderBreakers, redis: Redis, keys: Keys
) -> None:
    scope = new_name("host")
    assert await record(breakers, scope, T0, timeout=20) == "opened"
    assert await breakers.open_scopes() == [scope]
    await redis.delete(keys.breaker(scope))  # what its TTL does after a day of silence
    assert await breakers.open_scopes() == []
    assert not await redis.sismember(keys.breakers_open, scope)


async def test_a_held_refresh_comes_back_when_its_token_lapses_if_that_is_sooner(
    breakers: ProviderBreakers, locks: Locks, store: TokenStore, redis: Redis, keys: Keys,
) -> None:  # fmt: skip
    provider, scope, shard = new_name("provider"), new_name("host"), 9
    now = time.time()
    booked = await saved_in(store, keys, provider, shard, expires_in=3600)
    soon = await saved_in(store, keys, provider, shard, expires_in=120)
    assert await record(breakers, scope, now, timeout=20) == "opened"
    hold = Hold(scope, now + 1, POLICY.probe_seconds, POLICY.pause_seconds)
    for i, c, _ in (booked, soon):
        assert (await locks.claim(i, c, provider, 50, None, hold)).kind is ClaimKind.HELD
    connection = await store.get(soon[0], soon[1])
    assert connection.expires_at is not None
    score = await redis.zscore(keys.schedule(shard), keys.member(soon[0], soon[1]))
    assert score == pytest.approx(connection.expires_at + 1, abs=0.01)
    # Scored by when their token lapses: the release takes the soonest first.
    first = await redis.zrange(keys.breaker_held(scope, shard), 0, 0)
    assert first == [keys.member(soon[0], soon[1])]


async def test_release_brings_the_held_back_soonest_lapsing_first_at_the_rate(
    breakers: ProviderBreakers, store: TokenStore, redis: Redis, keys: Keys,
) -> None:  # fmt: skip
    provider, scope, shard = new_name("provider"), new_name("host"), 11
    conns = [await saved_in(store, keys, provider, shard) for _ in range(3)]
    members = [keys.member(i, c) for i, c, _ in conns]
    schedule, held = keys.schedule(shard), keys.breaker_held(scope, shard)
    late = T0 + 10_000
    await redis.zadd(schedule, {m: late for m in members})
    # Lapse order: the third first, then the first, then the second.
    await redis.zadd(held, {members[2]: 1, members[0]: 2, members[1]: 3})
    # A deleted connection is in the held set but no longer on the schedule.
    gone_id = in_shard(keys, "gone", shard)
    gone = keys.member("gone", gone_id)
    await redis.zadd(held, {gone: 4})
    # The first waits out a backoff of its failures (stored due time) until T0 + 500; the
    # second has the provider's Retry-After until T0 + 7.
    first_key, second_key = (keys.connection(i, c) for i, c, _ in conns[:2])
    await redis.hset(first_key, "next_refresh_at", repr(T0 + 500))
    await redis.hset(second_key, "retry_not_before", repr(T0 + 7))

    # Opened after they were saved (and last refreshed).
    released = await breakers.release_held(scope, T0, rate=10, opened_at=T0 - 100)

    assert released == 4
    assert not await redis.exists(held)
    due = await schedule_of(redis, keys)
    assert due[members[2]] == pytest.approx(T0, abs=0.01)
    assert due[members[0]] == pytest.approx(T0 + 0.1, abs=0.01)
    assert due[members[1]] == pytest.approx(T0 + 7, abs=0.01)
    assert gone not in due
    assert not await redis.exists(keys.connection("gone", gone_id))
    # The claim compares the stored due time: it moved with the schedule.
    assert await stored_due(redis, first_key) == pytest.approx(T0 + 0.1, abs=0.01)

    # One refreshed since the breaker opened (the probe, a refresh asked for) keeps its
    # schedule: moving it would refresh it again.
    third_key = keys.connection(conns[2][0], conns[2][1])
    await redis.hset(third_key, mapping={"last_refreshed_at": repr(T0 + 3),
                                         "next_refresh_at": repr(T0 + 3000)})  # fmt: skip
    await redis.zadd(schedule, {members[2]: T0 + 3000})
    await redis.zadd(held, {members[2]: 1})
    await breakers.release_held(scope, T0 + 10, rate=10, opened_at=T0 + 1)
    assert await redis.zscore(schedule, members[2]) == pytest.approx(T0 + 3000, abs=0.01)
    assert await stored_due(redis, third_key) == pytest.approx(T0 + 3000, abs=0.01)
    # A connection due sooner than its release keeps its time (LT).
    await redis.zadd(schedule, {members[0]: T0 - 5})
    await redis.zadd(held, {members[0]: 1})
    await breakers.release_held(scope, T0, rate=10)
    assert await redis.zscore(schedule, members[0]) == pytest.approx(T0 - 5, abs=0.01)


async def test_deadlines_count_the_integrations_connections_lapsing_within_a_day(
    breakers: ProviderBreakers, redis: Redis, keys: Keys
) -> None:
    mine, other = new_name("it"), new_name("it")
    # In shards of their own: the read walks every shard's deadlines.
    lapsed, hour, week = (in_shard(keys, mine, shard) for shard in (2, 7, 15))
    lapses = {(mine, lapsed): T0 - 10, (mine, hour): T0 + 600, (mine, week): T0 + 7 * 86400,
              (other, in_shard(keys, other, 0)): T0 + 5}  # fmt: skip
    for (integration, cid), at in lapses.items():
        await redis.zadd(keys.token_deadlines(keys.shard(integration, cid)),
                         {keys.member(integration, cid): at})  # fmt: skip
    found, truncated = await breakers.deadlines([mine], T0)
    assert not truncated
    assert sorted(found[mine]) == sorted([(hour, T0 + 600), (lapsed, T0 - 10)])


async def test_each_shard_probes_on_its_own_the_first_probes_staggered_over_an_interval(
    breakers: ProviderBreakers, locks: Locks, store: TokenStore, redis: Redis, keys: Keys,
) -> None:  # fmt: skip
    """A shard's claims see the breaker through the shard's gate: every shard lets one
    probe through per interval, shard s first at now + probe * (1 + s / shards)."""
    provider, scope = new_name("provider"), new_name("host")
    now = time.time()
    early = await saved_in(store, keys, provider, 0, expires_in=3600)
    late = await saved_in(store, keys, provider, 12, expires_in=3600)
    assert await record(breakers, scope, now, timeout=20) == "opened"
    for shard in keys.all_shards:
        gate = cast(dict[str, str], await redis.hgetall(keys.breaker_gate(scope, shard)))
        assert gate["state"] == "open"
        assert float(gate["probe_at"]) == pytest.approx(first_probe(now, shard, keys), abs=1e-5)

    def claim(conn: tuple[str, str, TokenSet], at: float) -> Awaitable[Claim]:
        hold = Hold(scope, at, POLICY.probe_seconds, POLICY.pause_seconds)
        return locks.claim(conn[0], conn[1], provider, 50, None, hold)

    # Shard 0's probe time (now + 30): its claim probes, shard 12's (now + 52.5) is held.
    at = first_probe(now, 0, keys) + 1
    assert (await claim(early, at)).probe
    assert (await claim(late, at)).kind is ClaimKind.HELD
    assert await breakers.held_count(scope) == 1
    # Shard 12's time comes: its own probe, though shard 0 probed less than 30 s before.
    probe = await claim(late, first_probe(now, 12, keys) + 1)
    assert probe.kind is ClaimKind.OK and probe.probe
    assert await breakers.held_count(scope) == 0


async def test_a_breaker_still_open_puts_back_a_missing_gate_and_close_removes_them_all(
    breakers: ProviderBreakers, store: TokenStore, redis: Redis, keys: Keys,
) -> None:  # fmt: skip
    provider, scope = new_name("provider"), new_name("host")
    assert await record(breakers, scope, T0, timeout=20) == "opened"
    gates = [keys.breaker_gate(scope, shard) for shard in keys.all_shards]
    assert await redis.exists(*gates) == keys.shards
    # A gate missing (its worker died between the breaker and the gates): the next batch
    # counted while open writes it; the gates kept keep their probe times.
    kept = await redis.hget(gates[1], "probe_at")
    await redis.delete(gates[4])
    assert await record(breakers, scope, T0 + 100, timeout=1) == "open"
    assert await redis.exists(*gates) == keys.shards
    assert await redis.hget(gates[1], "probe_at") == kept
    assert await redis.hget(gates[4], "state") == "open"

    # Held refreshes in two shards: closing releases both, on one ramp for the fleet.
    conns = [await saved_in(store, keys, provider, shard) for shard in (2, 6)]
    members = [keys.member(i, c) for i, c, _ in conns]
    for (i, c, _), member in zip(conns, members, strict=True):
        shard = keys.shard(i, c)
        await redis.zadd(keys.schedule(shard), {member: T0 + 10_000})
        await redis.zadd(keys.breaker_held(scope, shard), {member: 1})
    assert await breakers.held_count(scope) == 2

    assert await breakers.close(scope, T0, rate=10, opened_at=T0 - 100) == 2

    assert await redis.exists(*gates) == 0
    assert await breakers.held_count(scope) == 0
    due = await schedule_of(redis, keys)
    assert sorted(due[m] for m in members) == pytest.approx([T0, T0 + 0.1], abs=0.01)
