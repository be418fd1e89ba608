"""`TokenStore.claim` against the real Redis: a connection's lock, its fields and, when it
has a refresh token, one of at most `slots` per provider, all in one round trip."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import cast

import pytest
from redis.asyncio import Redis

from tokenlife.adapters.keys import PROVIDER_SLOT_TTL_SECONDS, REFRESH_LOCK_TTL_SECONDS, Keys
from tokenlife.adapters.locks import Claim, ClaimKind, Lease, Locks
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.settings import Settings

SAVED_AT = 1_700_000_000.25


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def token_set(*, refresh: bool) -> TokenSet:
    # Long, unique values: a substring search for them can't match by accident.
    return TokenSet(
        access_token="access-" + uuid.uuid4().hex + uuid.uuid4().hex,
        token_type="Bearer",
        refresh_token="refresh-" + uuid.uuid4().hex + uuid.uuid4().hex if refresh else None,
        expires_at=SAVED_AT + 3599,
        lifetime_seconds=3599,
        lifetime_source="expires_in",
        granted_scopes=("openid", "email"),
    )


async def saved(
    store: TokenStore,
    provider: str,
    *,
    refresh: bool = True,
    integration: str | None = None,
    expires_in: float | None = None,
    connection_id: str | None = None,
) -> tuple[str, str, TokenSet]:
    """A stored connection of `provider`: its integration, id and token set (expiring
    `expires_in` seconds from now when given)."""
    integration, cid = integration or new_name("it"), connection_id or new_name("conn")
    tokens = token_set(refresh=refresh)
    if expires_in is not None:
        tokens = replace(tokens, expires_at=time.time() + expires_in)
    await store.save(
        integration=integration,
        connection_id=cid,
        provider=provider,
        tokens=tokens,
        verdict=Verdict.REFRESHABLE if refresh else Verdict.LONG_LIVED,
        status=Status.ACTIVE,
        scopes_requested=("openid", "email"),
        next_check_at=SAVED_AT + 3000,
        now=SAVED_AT,
    )
    return integration, cid, tokens


def in_shard(keys: Keys, integration: str, shard: int) -> str:
    """A new connection id of `integration` whose keys are in `shard`."""
    while True:
        cid = new_name("conn")
        if keys.shard(integration, cid) == shard:
            return cid


def lease_of(claim: Claim) -> Lease:
    assert claim.kind == "ok", claim
    assert claim.lease is not None
    return claim.lease


async def slot_members(redis: Redis, keys: Keys, provider: str) -> list[str]:
    return sorted(cast(list[str], await redis.zrange(keys.provider_slots(provider), 0, -1)))


async def test_claims_stop_at_the_slot_limit_and_a_throttled_claim_frees_its_lock(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    first_three = [await saved(store, provider) for _ in range(3)]
    integration, fourth, _ = await saved(store, provider)

    leases = [lease_of(await locks.claim(i, cid, provider, 3)) for i, cid, _ in first_three]
    throttled = await locks.claim(integration, fourth, provider, 3)

    tokens = [lease.slot_token for lease in leases]
    assert all(tokens)
    assert len(set(tokens)) == 3
    assert await slot_members(redis, keys, provider) == sorted(cast(list[str], tokens))
    assert throttled == Claim(ClaimKind.THROTTLED)
    assert not await redis.exists(keys.lock(integration, fourth))
    # Nothing of the throttled claim stays behind: with room, it is taken at once.
    assert (await locks.claim(integration, fourth, provider, 4)).kind == "ok"


async def test_give_back_frees_the_lock_and_the_slot(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    integration, cid, _ = await saved(store, provider)
    other_integration, other, _ = await saved(store, provider)
    lease = lease_of(await locks.claim(integration, cid, provider, 1))
    assert (await locks.claim(other_integration, other, provider, 1)).kind == "throttled"

    await locks.give_back(lease)

    assert lease.released
    assert not await redis.exists(keys.lock(integration, cid))
    assert await slot_members(redis, keys, provider) == []
    assert (await locks.claim(other_integration, other, provider, 1)).kind == "ok"
    assert (await locks.claim(integration, cid, provider, 2)).kind == "ok"


async def test_slots_are_per_provider(store: TokenStore, locks: Locks) -> None:
    one, two = new_name("provider"), new_name("provider")
    (i1, c1, _), (i2, c2, _), (i3, c3, _) = (
        await saved(store, one),
        await saved(store, two),
        await saved(store, one),
    )

    assert (await locks.claim(i1, c1, one, 1)).kind == "ok"
    assert (await locks.claim(i2, c2, two, 1)).kind == "ok"
    assert (await locks.claim(i3, c3, one, 1)).kind == "throttled"


async def test_a_connection_without_a_refresh_token_takes_no_slot(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    """It only gets an expiry check, no request to the provider: full slots don't stop it."""
    provider = new_name("provider")
    i1, refreshable, _ = await saved(store, provider)
    taken = lease_of(await locks.claim(i1, refreshable, provider, 1))
    integration, cid, _ = await saved(store, provider, refresh=False)

    claim = await locks.claim(integration, cid, provider, 1)

    lease = lease_of(claim)
    assert lease.slot_token is None
    assert claim.refresh_ciphertext is None
    assert claim.connection is not None and not claim.connection.has_refresh_token
    assert await redis.exists(keys.lock(integration, cid))
    assert await slot_members(redis, keys, provider) == [taken.slot_token]


async def test_a_locked_connection_is_not_claimed_and_takes_no_slot(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    integration, cid, _ = await saved(store, provider)
    first = lease_of(await locks.claim(integration, cid, provider, 5))

    assert await locks.claim(integration, cid, provider, 5) == Claim(ClaimKind.LOCKED)
    assert await slot_members(redis, keys, provider) == [first.slot_token]
    assert await redis.get(keys.lock(integration, cid)) == first.lock_token

    # A lock taken outside a claim (an on-demand refresh) counts the same.
    other_integration, other, _ = await saved(store, provider)
    assert await locks.acquire(other_integration, other) is not None
    assert await locks.claim(other_integration, other, provider, 5) == Claim(ClaimKind.LOCKED)


async def test_a_missing_connection_is_gone_and_leaves_no_lock_behind(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider, integration, cid = new_name("provider"), new_name("it"), new_name("conn")

    assert await locks.claim(integration, cid, provider, 5) == Claim(ClaimKind.GONE)

    assert not await redis.exists(keys.lock(integration, cid))
    assert await slot_members(redis, keys, provider) == []


async def test_the_lock_and_the_slot_expire_after_their_ttls(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider, now = new_name("provider"), time.time()
    integration, cid, _ = await saved(store, provider, expires_in=86400)

    lease = lease_of(await locks.claim(integration, cid, provider, 1))

    ttl_ms = await redis.pttl(keys.lock(integration, cid))
    assert (REFRESH_LOCK_TTL_SECONDS - 10) * 1000 <= ttl_ms <= REFRESH_LOCK_TTL_SECONDS * 1000
    assert lease.slot_token is not None
    expires = await redis.zscore(keys.provider_slots(provider), lease.slot_token)
    assert expires is not None
    assert now + PROVIDER_SLOT_TTL_SECONDS - 1 <= expires <= time.time() + PROVIDER_SLOT_TTL_SECONDS


@pytest.mark.parametrize(
    ("token_left", "lowest", "highest"),
    [
        (60.0, 29.0, 30.0),  # half the time left
        (3600.0, REFRESH_LOCK_TTL_SECONDS - 1, REFRESH_LOCK_TTL_SECONDS),  # capped
        (20.0, 14.0, 15.0),  # never below the floor (one token request)
        (-100.0, 14.0, 15.0),  # lapsed already
    ],
)
async def test_the_lock_lives_half_the_time_the_token_has_left(
    store: TokenStore,
    locks: Locks,
    redis: Redis,
    keys: Keys,
    token_left: float,
    lowest: float,
    highest: float,
) -> None:
    provider = new_name("provider")
    integration, cid, _ = await saved(store, provider, expires_in=token_left)

    lease_of(await locks.claim(integration, cid, provider, 1))

    ttl = await redis.pttl(keys.lock(integration, cid)) / 1000
    assert lowest <= ttl <= highest


async def test_a_crashed_workers_expired_slot_is_reclaimed(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    (i1, crashed, _), (i2, cid, _) = await saved(store, provider), await saved(store, provider)
    assert lease_of(await locks.claim(i1, crashed, provider, 1)).slot_token is not None
    assert (await locks.claim(i2, cid, provider, 1)).kind == "throttled"
    # The crashed worker's slot as it is once its TTL (by Redis's clock) has passed.
    (stale,) = await slot_members(redis, keys, provider)
    await redis.zadd(keys.provider_slots(provider), {stale: time.time() - 1})

    fresh = lease_of(await locks.claim(i2, cid, provider, 1))

    assert fresh.slot_token is not None
    assert await slot_members(redis, keys, provider) == [fresh.slot_token]


async def test_concurrent_claims_never_exceed_the_limit(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys, settings: Settings
) -> None:
    provider, integration = new_name("provider"), new_name("it")
    connections = [await saved(store, provider, integration=integration) for _ in range(50)]
    other = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        both = [locks, Locks(other, keys)]
        claims = await asyncio.gather(
            *(
                both[n % 2].claim(integration, cid, provider, 10)
                for n, (_, cid, _) in enumerate(connections)
            )
        )
    finally:
        await other.aclose()

    kinds = [claim.kind for claim in claims]
    assert (kinds.count(ClaimKind.OK), kinds.count(ClaimKind.THROTTLED)) == (10, 40), kinds
    granted = [lease_of(claim).slot_token for claim in claims if claim.kind == "ok"]
    assert all(granted)
    assert await slot_members(redis, keys, provider) == sorted(cast(list[str], granted))
    locked = [await redis.exists(keys.lock(integration, cid)) for _, cid, _ in connections]
    assert locked == [int(claim.kind == "ok") for claim in claims]


async def test_a_claim_returns_the_connection_and_the_refresh_token_still_encrypted(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    integration, cid, tokens = await saved(store, provider)
    assert tokens.refresh_token is not None

    claim = await locks.claim(integration, cid, provider, 1)

    lease = lease_of(claim)
    assert (lease.integration, lease.connection_id, lease.provider) == (integration, cid, provider)
    assert not lease.released
    assert claim.connection is not None
    assert claim.connection == (await store.load(integration, cid))[0]  # as stored
    assert claim.connection.provider == provider
    assert claim.connection.has_refresh_token
    ciphertext = claim.refresh_ciphertext
    assert ciphertext is not None
    assert tokens.refresh_token not in ciphertext
    assert ciphertext == await redis.hget(keys.connection(integration, cid), "refresh_token")
    assert store.decrypt(ciphertext) == tokens.refresh_token


@pytest.mark.parametrize(
    ("grace", "lowest", "highest"),
    [(30, 14.0, 15.0), (600, 299.0, 300.0),  # half the grace
     (0, REFRESH_LOCK_TTL_SECONDS - 1, REFRESH_LOCK_TTL_SECONDS), (None, 329.0, 330.0)],
)  # fmt: skip
async def test_a_refresh_claim_comes_due_again_inside_the_providers_reuse_grace(
    store: TokenStore,
    locks: Locks,
    redis: Redis,
    keys: Keys,
    grace: int | None,
    lowest: float,
    highest: float,
) -> None:
    """A worker that dies mid-refresh: the lock frees and the connection comes due while
    the old refresh token still works at the provider (Okta: 30 s grace)."""
    provider, now = new_name("provider"), time.time()
    integration, cid, _ = await saved(store, provider, expires_in=86400)
    member = keys.member(integration, cid)
    await redis.zadd(
        keys.schedule_of(integration, cid), {member: now + 7200}
    )  # due later: a claim moves it closer

    lease_of(await locks.claim(integration, cid, provider, 1, grace))

    ttl = await redis.pttl(keys.lock(integration, cid)) / 1000
    assert lowest <= ttl <= highest
    due = await redis.zscore(keys.schedule_of(integration, cid), member)
    assert due is not None and now + lowest - 1 <= due <= time.time() + highest + 1


async def test_a_claim_never_puts_back_a_connection_that_is_off_the_schedule(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    integration, cid, _ = await saved(store, provider, expires_in=86400)
    await redis.zrem(keys.schedule_of(integration, cid), keys.member(integration, cid))

    lease_of(await locks.claim(integration, cid, provider, 1, 30))

    assert (
        await redis.zscore(keys.schedule_of(integration, cid), keys.member(integration, cid))
        is None
    )


async def test_a_slot_lives_no_longer_than_the_lock(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    """A claim whose caller was cancelled before the reply came leaks nothing for long."""
    provider = new_name("provider")
    integration, cid, _ = await saved(store, provider, expires_in=60)  # lock: 30 s
    before = time.time()

    lease = lease_of(await locks.claim(integration, cid, provider, 3))

    lock_ms = await redis.pttl(keys.lock(integration, cid))
    slot_until = await redis.zscore(keys.provider_slots(provider), cast(str, lease.slot_token))
    assert 25_000 < lock_ms <= 30_000
    assert slot_until is not None and slot_until <= time.time() + 30.5
    assert slot_until >= before + 25 < before + PROVIDER_SLOT_TTL_SECONDS


async def test_a_corrupt_record_is_claimed_as_corrupt_and_leaves_no_lock_or_slot(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    """A half-written record can't be parsed after the script took the lock and a slot:
    both go back at once, or every lease of it would hold one of the provider's slots."""
    provider = new_name("provider")
    integration, cid, _ = await saved(store, provider)
    await redis.hdel(keys.connection(integration, cid), "status", "version")

    claim = await locks.claim(integration, cid, provider, 1)

    assert claim == Claim(ClaimKind.CORRUPT)
    assert not await redis.exists(keys.lock(integration, cid))
    assert await slot_members(redis, keys, provider) == []
    other_integration, other, _ = await saved(store, provider)
    assert (await locks.claim(other_integration, other, provider, 1)).kind == "ok"
