"""Locks against the real Redis: one holder per connection, at most `limit` per provider."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from tokenlife.adapters.keys import PROVIDER_SLOT_TTL_SECONDS, REFRESH_LOCK_TTL_SECONDS, Keys
from tokenlife.adapters.locks import Locks
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


async def test_release_with_a_wrong_token_leaves_the_lock_held(locks: Locks) -> None:
    """A worker whose lock expired and was taken over must not free the new holder's."""
    integration, cid = new_name("it"), new_name("conn")
    token = await locks.acquire(integration, cid)
    assert token is not None

    await locks.release(integration, cid, "not-" + token)

    assert await locks.held(integration, cid)
    assert await locks.acquire(integration, cid) is None


async def test_release_with_the_right_token_frees_the_lock(locks: Locks) -> None:
    integration, cid = new_name("it"), new_name("conn")
    token = await locks.acquire(integration, cid)
    assert token is not None
    assert await locks.held(integration, cid)

    await locks.release(integration, cid, token)

    assert not await locks.held(integration, cid)
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


async def test_held_is_false_for_a_lock_never_taken(locks: Locks) -> None:
    assert not await locks.held(new_name("it"), new_name("conn"))


async def test_slots_stop_at_the_limit_and_a_release_frees_one(locks: Locks) -> None:
    provider, now = new_name("provider"), time.time()

    slots = [await locks.acquire_slot(provider, 3, now) for _ in range(3)]

    assert all(slots)
    assert len(set(slots)) == 3
    assert await locks.acquire_slot(provider, 3, now) is None

    first = slots[0]
    assert first is not None
    await locks.release_slot(provider, first)

    assert await locks.acquire_slot(provider, 3, now) is not None
    assert await locks.acquire_slot(provider, 3, now) is None


async def test_slots_are_per_provider(locks: Locks) -> None:
    now = time.time()
    assert await locks.acquire_slot(new_name("provider"), 1, now) is not None

    assert await locks.acquire_slot(new_name("provider"), 1, now) is not None


async def test_a_slot_expires_after_the_provider_slot_ttl(
    locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider, now = new_name("provider"), time.time()

    token = await locks.acquire_slot(provider, 1, now)

    assert token is not None
    expires = await redis.zscore(keys.provider_slots(provider), token)
    assert expires == now + PROVIDER_SLOT_TTL_SECONDS


async def test_a_crashed_workers_expired_slot_is_reclaimed(
    locks: Locks, redis: Redis, keys: Keys
) -> None:
    provider = new_name("provider")
    long_ago = time.time() - 10 * PROVIDER_SLOT_TTL_SECONDS
    stale = await locks.acquire_slot(provider, 1, long_ago)
    assert stale is not None
    assert await locks.acquire_slot(provider, 1, long_ago) is None  # live at its own time

    fresh = await locks.acquire_slot(provider, 1, time.time())

    assert fresh is not None
    assert await redis.zrange(keys.provider_slots(provider), 0, -1) == [fresh]


async def test_concurrent_slot_requests_never_exceed_the_limit(
    locks: Locks, redis: Redis, keys: Keys, settings: Settings
) -> None:
    provider, now = new_name("provider"), time.time()
    other = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        both = [locks, Locks(other, keys)]
        results = await asyncio.gather(
            *(both[i % 2].acquire_slot(provider, 10, now) for i in range(50))
        )
    finally:
        await other.aclose()

    granted = [token for token in results if token is not None]
    assert len(granted) == 10, f"{len(granted)} of 50 requests got a slot with limit 10"
    assert sorted(await redis.zrange(keys.provider_slots(provider), 0, -1)) == sorted(granted)
