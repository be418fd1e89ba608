"""Locks against the real Redis: one holder per connection, released only by its holder.

Provider slots are taken by `TokenStore.claim`; tests/adapters/test_claim.py covers them.
"""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from tokenlife.adapters.keys import REFRESH_LOCK_TTL_SECONDS, Keys
from tokenlife.adapters.locks import Lease, Locks
from tokenlife.settings import Settings


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def locks(redis: Redis, keys: Keys) -> Locks:
    return Locks(redis, keys)


async def test_a_held_lock_is_not_handed_out_again(locks: Locks) -> None:
    integration, cid = new_name("it"), new_name("conn")

    token = await locks.acquire(integration, cid)

    assert token
    assert await locks.acquire(integration, cid) is None
    assert await locks.acquire(integration, new_name("conn")) is not None  # per connection


async def test_release_with_a_wrong_token_leaves_the_lock_held(
    locks: Locks, redis: Redis, keys: Keys
) -> None:
    """A worker whose lock expired and was taken over must not free the new holder's."""
    integration, cid = new_name("it"), new_name("conn")
    token = await locks.acquire(integration, cid)
    assert token is not None

    await locks.release(integration, cid, "not-" + token)

    assert await redis.exists(keys.lock(integration, cid))
    assert await locks.acquire(integration, cid) is None


async def test_release_with_the_right_token_frees_the_lock(
    locks: Locks, redis: Redis, keys: Keys
) -> None:
    integration, cid = new_name("it"), new_name("conn")
    token = await locks.acquire(integration, cid)
    assert token is not None
    assert await redis.exists(keys.lock(integration, cid))

    await locks.release(integration, cid, token)

    assert not await redis.exists(keys.lock(integration, cid))
    again = await locks.acquire(integration, cid)
    assert again is not None
    assert again != token


async def test_the_lock_expires_after_the_refresh_lock_ttl(
    locks: Locks, redis: Redis, keys: Keys
) -> None:
    integration, cid = new_name("it"), new_name("conn")

    await locks.acquire(integration, cid)

    ttl_ms = await redis.pttl(keys.lock(integration, cid))
    assert (REFRESH_LOCK_TTL_SECONDS - 10) * 1000 <= ttl_ms <= REFRESH_LOCK_TTL_SECONDS * 1000


async def test_give_back_frees_only_its_own_lock_and_only_once(
    locks: Locks, redis: Redis, keys: Keys
) -> None:
    """A lease whose lock expired and was taken over must not free the new holder's."""
    integration, cid, provider = new_name("it"), new_name("conn"), new_name("provider")
    token = await locks.acquire(integration, cid)
    assert token is not None
    lease = Lease(integration, cid, provider, token, "slot-" + token)
    await redis.zadd(keys.provider_slots(provider), {"slot-" + token: 1, "other-slot": 1})

    await locks.give_back(lease)

    assert lease.released
    assert not await redis.exists(keys.lock(integration, cid))
    assert await redis.zrange(keys.provider_slots(provider), 0, -1) == ["other-slot"]

    newer = await locks.acquire(integration, cid)
    assert newer is not None
    await locks.give_back(lease)  # already given back: a no-op
    assert await redis.exists(keys.lock(integration, cid))

    lease.released = False
    await locks.give_back(lease)  # even sent again, the wrong token frees nothing
    assert await redis.get(keys.lock(integration, cid)) == newer
