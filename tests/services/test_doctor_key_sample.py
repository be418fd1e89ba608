"""The key sample of `tokenlife doctor`, against the real Redis: each stored connection
counted by the key that decrypts it, as `tokenlife keys status` counts (KeyRotation),
bounded by a limit."""

from __future__ import annotations

import time
import uuid

from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.services.doctor import Bounds, key_sample

NEW, OLD, LOST = (Fernet.generate_key().decode() for _ in range(3))


async def save(redis: Redis, keys: Keys, key: str, cid: str, refresh: str | None) -> None:
    store = TokenStore(redis, keys, Cipher([key]))
    await store.save(
        integration="google", connection_id=cid, provider="google",
        tokens=TokenSet("at", "Bearer", refresh, None, None, None, None),
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=(),
        next_check_at=None, now=time.time(),
    )  # fmt: skip


async def test_each_connection_is_counted_by_the_key_that_decrypts_it(redis: Redis) -> None:
    keys = Keys(f"keyuse-{uuid.uuid4().hex[:8]}")
    await save(redis, keys, NEW, "u-new", "rt")
    await save(redis, keys, OLD, "u-old", None)
    await save(redis, keys, LOST, "u-lost", "rt")
    # A half-written hash (no access_token) is no connection, and the schedule and the
    # connect sessions of the same prefix are not connections either.
    await redis.hset(keys.connection("google", "u-half"), "status", "active")
    await redis.set(keys.connect_session("google", "h"), "{}")

    sample = await key_sample(redis, keys, (NEW, OLD), Bounds(timeout=5, sample_size=100))

    assert (sample.examined, sample.current, sample.older, sample.undecryptable) == (3, 1, 1, 1)
    assert sample.examples == ("google/u-lost",)
    assert sample.complete and sample.error is None


async def test_a_connection_needing_two_keys_counts_as_older(redis: Redis) -> None:
    keys = Keys(f"keyuse-{uuid.uuid4().hex[:8]}")
    await save(redis, keys, NEW, "u-mixed", "rt")
    # A refresh token still under the older key beside an access token under the first.
    old_refresh = Cipher([OLD]).encrypt("rt")
    await redis.hset(keys.connection("google", "u-mixed"), "refresh_token", old_refresh)

    sample = await key_sample(redis, keys, (NEW, OLD), Bounds(timeout=5, sample_size=100))

    assert (sample.current, sample.older) == (0, 1)


async def test_the_sample_stops_at_its_limit_and_says_it_is_partial(redis: Redis) -> None:
    keys = Keys(f"keyuse-{uuid.uuid4().hex[:8]}")
    for n in range(3):
        await save(redis, keys, NEW, f"u-{n}", None)

    sample = await key_sample(redis, keys, (NEW,), Bounds(timeout=5, sample_size=2))

    assert sample.examined == 2 and not sample.complete


async def test_without_keys_every_stored_connection_is_counted_and_none_decrypts(
    redis: Redis,
) -> None:
    keys = Keys(f"keyuse-{uuid.uuid4().hex[:8]}")
    await save(redis, keys, NEW, "u-1", "rt")

    sample = await key_sample(redis, keys, (), Bounds(timeout=5, sample_size=100))

    assert (sample.examined, sample.undecryptable) == (1, 1)
