"""PendingStore against the real Redis: a state is stored once and consumed once."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import replace
from typing import cast

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.support import wait_until
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.event_stream import new_event
from tokenlife.adapters.keys import (
    EXCHANGE_CLAIM_TTL_SECONDS,
    Keys,
)
from tokenlife.adapters.pending_store import ExchangeClaim, PendingStore
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.events import Event
from tokenlife.errors import InvalidStateError
from tokenlife.settings import Settings

NOW = 1_700_000_000.5


def new_state() -> str:
    return secrets.token_urlsafe(32)


def new_owner() -> str:
    return f"task-{uuid.uuid4()}"


def pending(verifier: str | None = "verifier-" + "v" * 43) -> PendingAuthorization:
    return PendingAuthorization(
        integration="it-" + uuid.uuid4().hex[:12],
        connection_id="conn-" + uuid.uuid4().hex[:12],
        redirect_uri="http://127.0.0.1:9/oauth/callback",
        params={"response_type": "code", "client_id": "client", "scope": "openid email"},
        created_at=NOW,
        verifier=verifier,
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def store(redis: Redis, keys: Keys, settings: Settings) -> PendingStore:
    cipher = Cipher(settings.encryption_keys or (Fernet.generate_key().decode(),))
    return PendingStore(redis, keys, cipher)


async def test_claim_returns_the_record_with_the_decrypted_verifier(store: PendingStore) -> None:
    state, record = new_state(), pending()
    await store.put(state, record)

    claimed = (await store.claim(state, new_owner())).pending

    assert claimed == record
    assert claimed.verifier == record.verifier


async def test_a_record_without_pkce_claims_without_verifier(store: PendingStore) -> None:
    state, record = new_state(), pending(verifier=None)
    await store.put(state, record)

    assert (await store.claim(state, new_owner())).pending == record


async def test_the_verifier_is_never_stored_in_plaintext(
    store: PendingStore, redis: Redis, keys: Keys
) -> None:
    state, record = new_state(), pending(verifier="pkce-" + secrets.token_urlsafe(40))
    assert record.verifier is not None
    await store.put(state, record)

    raw = cast(str, await redis.get(keys.pending(state)))
    assert record.verifier not in raw
    assert json.loads(raw)["connection_id"] == record.connection_id  # the rest is readable

    await store.claim(state, new_owner())
    claim = cast(dict[str, str], await redis.hgetall(keys.exchanging(state)))
    assert claim, "the claim left no exchanging record"
    for name, value in claim.items():
        assert record.verifier not in value, f"plaintext verifier in claim field {name!r}"


async def test_a_claim_by_another_owner_is_in_progress_until_the_first_ends(
    store: PendingStore,
) -> None:
    state = new_state()
    await store.put(state, pending())
    await store.claim(state, new_owner())

    other = await store.claim(state, new_owner())

    assert other == ExchangeClaim(in_progress=True)  # nothing to exchange: not its claim


async def test_the_same_owner_claims_again_while_retrying(store: PendingStore) -> None:
    state, record, owner = new_state(), pending(), new_owner()
    await store.put(state, record)
    await store.claim(state, owner)

    assert (await store.claim(state, owner)).pending == record


async def test_an_unknown_state_is_invalid(store: PendingStore) -> None:
    with pytest.raises(InvalidStateError):
        await store.claim(new_state(), new_owner())


async def test_a_pending_state_lives_for_ten_minutes(
    store: PendingStore, redis: Redis, keys: Keys
) -> None:
    state = new_state()

    await store.put(state, pending())

    assert 590 <= await redis.ttl(keys.pending(state)) <= 600  # ten minutes, as documented


async def test_a_claim_binds_the_state_for_the_exchange_claim_ttl(
    store: PendingStore, redis: Redis, keys: Keys
) -> None:
    state = new_state()
    await store.put(state, pending())

    await store.claim(state, new_owner())

    assert await redis.exists(keys.pending(state)) == 0
    ttl_ms = await redis.pttl(keys.exchanging(state))
    assert (EXCHANGE_CLAIM_TTL_SECONDS - 10) * 1000 <= ttl_ms <= EXCHANGE_CLAIM_TTL_SECONDS * 1000


async def test_an_expired_state_is_invalid(store: PendingStore, redis: Redis, keys: Keys) -> None:
    state = new_state()
    await store.put(state, pending())
    key = keys.pending(state)

    await redis.pexpire(key, 1)
    await wait_until(lambda: _is_gone(redis, key), timeout=5, what=f"{key} to expire")

    with pytest.raises(InvalidStateError):
        await store.claim(state, new_owner())


async def _is_gone(redis: Redis, key: str) -> bool:
    return await redis.exists(key) == 0


async def test_putting_the_same_state_twice_is_refused(store: PendingStore) -> None:
    state, record = new_state(), pending()
    await store.put(state, record)

    with pytest.raises(InvalidStateError):
        await store.put(state, pending())
    assert (await store.claim(state, new_owner())).pending == record  # the first record is intact


async def test_a_state_being_exchanged_cannot_be_put_again(store: PendingStore) -> None:
    state, owner, record = new_state(), new_owner(), pending()
    await store.put(state, record)
    await store.claim(state, owner)

    with pytest.raises(InvalidStateError):
        await store.put(state, pending())
    assert (await store.claim(state, owner)).pending == record  # the claim in progress survives


async def test_of_concurrent_claims_by_different_owners_exactly_one_wins(
    store: PendingStore,
) -> None:
    state, record = new_state(), pending()
    await store.put(state, record)

    results = await asyncio.gather(
        *(store.claim(state, new_owner()) for _ in range(20)), return_exceptions=True
    )

    winners = [r.pending for r in results if isinstance(r, ExchangeClaim) and r.pending]
    losers = [r for r in results if r == ExchangeClaim(in_progress=True)]
    assert winners == [record]
    assert len(losers) == 19, f"unexpected results: {results!r}"


async def test_read_leaves_the_state_pending_and_shows_no_verifier(store: PendingStore) -> None:
    state, owner = new_state(), new_owner()
    record = replace(pending(), end_user={"id": "42"}, browser_binding="ab" * 32)
    await store.put(state, record)

    read = await store.read(state)

    assert read == replace(record, verifier=None)
    assert await store.read(state) == read  # reading consumes nothing
    assert (await store.claim(state, owner)).pending == record  # the claim gets all of it
    assert await store.read(state) is None  # claimed: no longer pending
    assert await store.read(new_state()) is None


def failed_event(record: PendingAuthorization, error: str) -> Event:
    diagnosis = [{"cause": "the user declined", "fix": "ask the user to connect again",
                  "evidence": f"error={error}", "source": None}]  # fmt: skip
    return new_event("exchange.failed", record.integration, record.connection_id, NOW,
                     error=error, error_description=None, attempts=1,
                     diagnosis=diagnosis)  # fmt: skip


async def test_once_finished_anyone_gets_the_outcome_and_the_record_is_dropped(
    store: PendingStore, redis: Redis, keys: Keys
) -> None:
    state, record, owner = new_state(), pending(), new_owner()
    await store.put(state, record)
    await store.claim(state, owner)

    kept = await store.finish(state, failed_event(record, "access_denied"), {"outcome": "failed"})

    assert kept == {"outcome": "failed"}
    for claimant in (owner, new_owner()):  # the task delivered again, or a replay
        claim = await store.claim(state, claimant)
        assert (claim.pending, claim.finished) == (None, {"outcome": "failed"})
    assert not await redis.hexists(keys.exchanging(state), "pending")  # verifier gone


async def test_the_first_outcome_wins_and_publishes_one_event(
    store: PendingStore, redis: Redis, keys: Keys
) -> None:
    record = pending()
    # Drawn as the exchange draws it: in the connection's shard, where its events go.
    state = store.new_state(record.integration, record.connection_id)
    events = keys.events(keys.shard(record.integration, record.connection_id))
    await store.put(state, record)
    await store.claim(state, new_owner())
    before = await stream_lengths(redis, keys)

    first = await store.finish(state, failed_event(record, "access_denied"), {"n": 1})
    second = await store.finish(state, failed_event(record, "invalid_grant"), {"n": 2})

    assert first == second == {"n": 1}
    after = await stream_lengths(redis, keys)
    assert {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k)} == {events: 1}
    ((_, newest),) = cast(list[tuple[str, dict[str, str]]], await redis.xrevrange(events, count=1))
    assert json.loads(newest["data"])["connection_id"] == record.connection_id


async def stream_lengths(redis: Redis, keys: Keys) -> dict[str, int]:
    return {keys.events(shard): await redis.xlen(keys.events(shard)) for shard in keys.all_shards}


def test_a_new_state_is_drawn_in_its_connections_shard(store: PendingStore, keys: Keys) -> None:
    shards = set()
    for n in range(40):
        connection_id = f"conn-{n}"
        state = store.new_state("it", connection_id)
        assert keys.state_shard(state) == keys.shard("it", connection_id)
        assert len(state) >= 43  # 256 random bits, URL-safe
        shards.add(keys.state_shard(state))
    assert len(shards) > 1
    # Its keys carry the connection's hash tag.
    tag = keys.connection("it", "conn-0").split("}")[0]
    state = store.new_state("it", "conn-0")
    assert keys.pending(state).startswith(f"{tag}}}:")
    assert keys.exchanging(state).startswith(f"{tag}}}:")


async def test_a_retry_of_the_owner_learns_that_the_code_was_sent(store: PendingStore) -> None:
    state, record, owner = new_state(), pending(), new_owner()
    await store.put(state, record)
    assert (await store.claim(state, owner)).sent_at is None

    await store.note_sent(state, NOW)
    assert (await store.claim(state, owner)).sent_at == NOW

    await store.forget_sent(state)
    assert (await store.claim(state, owner)).sent_at is None
