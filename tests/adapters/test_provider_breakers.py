"""The provider breakers in the real Redis: counting outcomes over the sliding window, opening
once (for one caller), holding scheduled claims while open with one probe per interval,
closing on a probe's answer, and releasing the held refreshes soonest-lapsing first. Times
are the caller's: each test passes its own `now`."""

from __future__ import annotations

import time
from typing import cast

import pytest
from redis.asyncio import Redis

from tests.adapters.test_claim import new_name, saved
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import ClaimKind, Locks
from tokenlife.adapters.provider_breakers import Hold, ProviderBreakers
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.provider_breaker import BreakerPolicy

POLICY = BreakerPolicy(min_failures=10, failure_rate=0.5, window_seconds=60, probe_seconds=30,
                       pause_seconds=600, recovery_rate=10)  # fmt: skip
T0 = 1_800_000_000.0


@pytest.fixture
def breakers(redis: Redis, keys: Keys) -> ProviderBreakers:
    return ProviderBreakers(redis, keys)


async def schedule_of(redis: Redis, keys: Keys) -> dict[str, float]:
    pairs = cast(list[tuple[str, float]], await redis.zrange(keys.schedule, 0, -1, withscores=True))
    return dict(pairs)


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
    provider, scope = new_name("provider"), new_name("host")
    now = time.time()
    conns = [await saved(store, provider, expires_in=3600) for _ in range(4)]
    assert await record(breakers, scope, now, timeout=20) == "opened"

    def hold(at: float) -> Hold:
        return Hold(scope, at, POLICY.probe_seconds, POLICY.pause_seconds)

    kinds = [(await locks.claim(i, c, provider, 50, None, hold(now + 1))).kind
             for i, c, _ in conns]  # fmt: skip
    assert kinds == [ClaimKind.HELD] * 4
    # Nothing held stays locked, and every one is in the held set.
    for i, c, _ in conns:
        assert not await redis.exists(keys.lock(i, c))
    held = cast(list[str], await redis.zrange(keys.breaker_held(scope), 0, -1))
    assert sorted(held) == sorted(keys.member(i, c) for i, c, _ in conns)
    # The first held is booked for the next probe (opened at `now`, probe 30 s later), the
    # others wait out the pause (600 s, jittered by the caller; none here).
    due = await schedule_of(redis, keys)
    first = keys.member(conns[0][0], conns[0][1])
    assert due[first] == pytest.approx(now + 30.5, abs=0.01)
    for i, c, _ in conns[1:]:
        assert due[keys.member(i, c)] == pytest.approx(now + 1 + 600, abs=0.01)

    # At the probe time one claim goes ahead as the probe; the next is held again.
    i, c, _ = conns[0]
    probe = await locks.claim(i, c, provider, 50, None, hold(now + 31))
    assert probe.kind is ClaimKind.OK and probe.probe
    # The probe leaves the held set, and books the next held one for the next probe.
    assert keys.member(i, c) not in await redis.zrange(keys.breaker_held(scope), 0, -1)
    nxt = cast(list[str], await redis.zrange(keys.breaker_held(scope), 0, 0))[0]
    # Paced by the probe times: the next one 30 s after this one was due (now + 30), not
    # after it came (now + 31).
    assert await redis.zscore(keys.schedule, nxt) == pytest.approx(now + 60.5, abs=0.01)
    i2, c2, _ = conns[1]
    assert (await locks.claim(i2, c2, provider, 50, None, hold(now + 32))).kind is ClaimKind.HELD
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
    provider, scope = new_name("provider"), new_name("host")
    now = time.time()
    probe = await saved(store, provider, expires_in=3600)
    waiting = await saved(store, provider, expires_in=3600)
    next_one = keys.member(waiting[0], waiting[1])
    assert await record(breakers, scope, now, timeout=20) == "opened"
    # Deleted while held: in the held set, lapsing soonest, no longer on the schedule.
    await redis.zadd(keys.breaker_held(scope), {"gone:x": 1, next_one: 5})

    hold = Hold(scope, now + 31, POLICY.probe_seconds, POLICY.pause_seconds)
    claim = await locks.claim(probe[0], probe[1], provider, 50, None, hold)

    assert claim.kind is ClaimKind.OK and claim.probe
    assert await redis.zscore(keys.schedule, next_one) == pytest.approx(now + 60.5, abs=0.01)
    assert await redis.zrange(keys.breaker_held(scope), 0, -1) == [next_one]
    assert await redis.zscore(keys.schedule, "gone:x") is None


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
    provider, scope = new_name("provider"), new_name("host")
    now = time.time()
    booked = await saved(store, provider, expires_in=3600)
    soon = await saved(store, provider, expires_in=120)
    assert await record(breakers, scope, now, timeout=20) == "opened"
    hold = Hold(scope, now + 1, POLICY.probe_seconds, POLICY.pause_seconds)
    for i, c, _ in (booked, soon):
        assert (await locks.claim(i, c, provider, 50, None, hold)).kind is ClaimKind.HELD
    connection = await store.get(soon[0], soon[1])
    assert connection.expires_at is not None
    score = await redis.zscore(keys.schedule, keys.member(soon[0], soon[1]))
    assert score == pytest.approx(connection.expires_at + 1, abs=0.01)
    # Scored by when their token lapses: the release takes the soonest first.
    first = await redis.zrange(keys.breaker_held(scope), 0, 0)
    assert first == [keys.member(soon[0], soon[1])]


async def test_release_brings_the_held_back_soonest_lapsing_first_at_the_rate(
    breakers: ProviderBreakers, store: TokenStore, redis: Redis, keys: Keys,
) -> None:  # fmt: skip
    provider, scope = new_name("provider"), new_name("host")
    conns = [await saved(store, provider) for _ in range(3)]
    members = [keys.member(i, c) for i, c, _ in conns]
    late = T0 + 10_000
    await redis.zadd(keys.schedule, {m: late for m in members})
    # Lapse order: the third first, then the first, then the second.
    await redis.zadd(keys.breaker_held(scope), {members[2]: 1, members[0]: 2, members[1]: 3})
    # A deleted connection is in the held set but no longer on the schedule.
    gone = keys.member("gone", "x")
    await redis.zadd(keys.breaker_held(scope), {gone: 4})
    # The first waits out a backoff of its failures (stored due time) until T0 + 500; the
    # second has the provider's Retry-After until T0 + 7.
    first_key, second_key = (keys.connection(i, c) for i, c, _ in conns[:2])
    await redis.hset(first_key, "next_refresh_at", repr(T0 + 500))
    await redis.hset(second_key, "retry_not_before", repr(T0 + 7))

    # Opened after they were saved (and last refreshed).
    released = await breakers.release_held(scope, T0, rate=10, opened_at=T0 - 100)

    assert released == 4
    assert not await redis.exists(keys.breaker_held(scope))
    due = await schedule_of(redis, keys)
    assert due[members[2]] == pytest.approx(T0, abs=0.01)
    assert due[members[0]] == pytest.approx(T0 + 0.1, abs=0.01)
    assert due[members[1]] == pytest.approx(T0 + 7, abs=0.01)
    assert gone not in due
    assert not await redis.exists(keys.connection("gone", "x"))
    # The claim compares the stored due time: it moved with the schedule.
    assert await stored_due(redis, first_key) == pytest.approx(T0 + 0.1, abs=0.01)

    # One refreshed since the breaker opened (the probe, a refresh asked for) keeps its
    # schedule: moving it would refresh it again.
    third_key = keys.connection(conns[2][0], conns[2][1])
    await redis.hset(third_key, mapping={"last_refreshed_at": repr(T0 + 3),
                                         "next_refresh_at": repr(T0 + 3000)})  # fmt: skip
    await redis.zadd(keys.schedule, {members[2]: T0 + 3000})
    await redis.zadd(keys.breaker_held(scope), {members[2]: 1})
    await breakers.release_held(scope, T0 + 10, rate=10, opened_at=T0 + 1)
    assert await redis.zscore(keys.schedule, members[2]) == pytest.approx(T0 + 3000, abs=0.01)
    assert await stored_due(redis, third_key) == pytest.approx(T0 + 3000, abs=0.01)
    # A connection due sooner than its release keeps its time (LT).
    await redis.zadd(keys.schedule, {members[0]: T0 - 5})
    await redis.zadd(keys.breaker_held(scope), {members[0]: 1})
    await breakers.release_held(scope, T0, rate=10)
    assert await redis.zscore(keys.schedule, members[0]) == pytest.approx(T0 - 5, abs=0.01)


async def test_deadlines_count_the_integrations_connections_lapsing_within_a_day(
    breakers: ProviderBreakers, redis: Redis, keys: Keys
) -> None:
    mine, other = new_name("it"), new_name("it")
    await redis.zadd(keys.token_deadlines, {
        keys.member(mine, "lapsed"): T0 - 10, keys.member(mine, "hour"): T0 + 600,
        keys.member(mine, "week"): T0 + 7 * 86400, keys.member(other, "x"): T0 + 5,
    })  # fmt: skip
    found, truncated = await breakers.deadlines([mine], T0)
    assert not truncated
    assert sorted(found[mine]) == [("hour", T0 + 600), ("lapsed", T0 - 10)]
