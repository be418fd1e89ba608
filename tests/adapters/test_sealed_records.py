"""Key rotation over every kind of sealed record, against the real Redis, each test under a
key prefix of its own so its counts are its own."""

from __future__ import annotations

import secrets
import uuid

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.adapters.test_pending_store import new_owner, pending
from tests.adapters.test_token_store import NOW, save, token_set
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.sealed_records import RecordKind, SealedRecords
from tokenlife.adapters.token_store import TokenStore
from tokenlife.services.key_rotation import KeyRing, KeyRotation

NEW, OLD, STRANGER = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture
def keys() -> Keys:
    return Keys("reseal-" + uuid.uuid4().hex[:8])


def rotation(redis: Redis, keys: Keys, *key_list: str) -> KeyRotation:
    return KeyRotation(SealedRecords(redis, keys), KeyRing(key_list), batch_size=2)


async def test_pending_and_claimed_verifiers_are_resealed_and_keep_their_expiry(
    redis: Redis, keys: Keys
) -> None:
    before = PendingStore(redis, keys, Cipher([OLD]))
    waiting, claimed, owner = secrets.token_urlsafe(16), secrets.token_urlsafe(16), new_owner()
    await before.put(waiting, pending())
    await before.put(claimed, pending())
    await before.claim(claimed, owner)  # moved into the exchange's claim
    seen: list[int] = []

    census = await rotation(redis, keys, NEW, OLD).run(write=True, progress=seen.append)

    assert census.resealed == 2 and census.on_old_keys == 0
    assert dict(census.by_kind) == {"pending": 1, "exchange": 1}
    assert sum(seen) == 2
    assert 0 < await redis.ttl(keys.pending(waiting)) <= 600  # SET ... KEEPTTL
    after = PendingStore(redis, keys, Cipher([NEW]))  # the old key removed
    for state in (waiting, claimed):
        result = await after.claim(state, owner)
        assert result.pending is not None and result.pending.verifier == pending().verifier


async def test_status_counts_by_key_and_changes_nothing(redis: Redis, keys: Keys) -> None:
    await save(TokenStore(redis, keys, Cipher([OLD])), "it", "on-old", token_set())
    await save(TokenStore(redis, keys, Cipher([NEW])), "it", "on-new", token_set())
    await save(TokenStore(redis, keys, Cipher([STRANGER])), "it", "lost", token_set())
    stored = await redis.hgetall(keys.connection("it", "on-old"))

    census = await rotation(redis, keys, NEW, OLD).run(write=False, progress=lambda _: None)

    assert dict(census.by_key) == {0: 1, 1: 1} and census.undecryptable == 1
    assert census.on_old_keys == 1 and census.resealed == 0
    assert await redis.hgetall(keys.connection("it", "on-old")) == stored


async def test_a_connection_without_a_version_is_counted_never_resealed(
    redis: Redis, keys: Keys
) -> None:
    await save(TokenStore(redis, keys, Cipher([OLD])), "it", "no-version", token_set())
    await redis.hdel(keys.connection("it", "no-version"), "version")
    stored = await redis.hgetall(keys.connection("it", "no-version"))

    census = await rotation(redis, keys, NEW, OLD).run(write=True, progress=lambda _: None)

    assert census.unversioned == 1 and census.unversioned_keys == [
        keys.connection("it", "no-version")
    ]
    assert census.on_old_keys == 1 and census.resealed == 0  # still needs OLD: exit 6
    assert await redis.hgetall(keys.connection("it", "no-version")) == stored


async def test_a_record_changed_since_it_was_read_is_left_to_the_writer(
    redis: Redis, keys: Keys
) -> None:
    old_store = TokenStore(redis, keys, Cipher([OLD]))
    await save(old_store, "it", "busy", token_set())
    records = SealedRecords(redis, keys)
    [read] = await records.read(RecordKind.CONNECTION, [keys.connection("it", "busy")])
    # A refresh lands in between: the version moves on.
    fresh = token_set()
    connection = await old_store.get("it", "busy")
    assert await old_store.update(connection, now=NOW + 1, tokens=fresh) == 2

    written = await records.replace(read, read.resealed(KeyRing([NEW, OLD]).reseal))

    assert not written
    assert (await old_store.tokens("it", "busy")).refresh_token == fresh.refresh_token
    assert (await old_store.get("it", "busy")).version == 2


async def test_a_resealed_connection_keeps_its_version_and_its_tokens(
    redis: Redis, keys: Keys
) -> None:
    tokens = token_set()
    await save(TokenStore(redis, keys, Cipher([OLD])), "it", "quiet", tokens)

    census = await rotation(redis, keys, NEW, OLD).run(write=True, progress=lambda _: None)

    assert census.resealed == 1
    new_only = TokenStore(redis, keys, Cipher([NEW]))
    assert await new_only.tokens("it", "quiet") == tokens
    assert (await new_only.get("it", "quiet")).version == 1
