"""TokenStore writes that touch the schedule, and the compare-and-set `update`, which also
publishes an event when it writes and gives back the refresh's lock and slot either way."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import cast

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.support import stream_entries
from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.event_consumer import split_id
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import Lease, Locks
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.events import TOKEN_REFRESHED, Event
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.settings import Settings

NOW = 1_700_000_000.25
NEXT_CHECK = NOW + 3000.5


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def token_set(*, refresh: bool = True, expires: bool = True, now: float = NOW) -> TokenSet:
    # Long, unique values: a substring search for them can't match by accident.
    return TokenSet(
        access_token="access-" + uuid.uuid4().hex + uuid.uuid4().hex,
        token_type="Bearer",
        refresh_token="refresh-" + uuid.uuid4().hex + uuid.uuid4().hex if refresh else None,
        expires_at=now + 3599 if expires else None,
        lifetime_seconds=3599 if expires else None,
        lifetime_source="expires_in" if expires else None,
        granted_scopes=("openid", "email") if expires else None,
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    # A schedule of its own, so depth and scores here are this test's alone.
    return Keys(f"{settings.key_prefix}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(redis: Redis, keys: Keys, settings: Settings) -> TokenStore:
    return TokenStore(
        redis, keys, Cipher(settings.encryption_keys or (Fernet.generate_key().decode(),))
    )


@pytest.fixture
def locks(redis: Redis, keys: Keys) -> Locks:
    return Locks(redis, keys)


async def save(
    store: TokenStore,
    integration: str,
    connection_id: str,
    tokens: TokenSet,
    *,
    next_check_at: float | None = NEXT_CHECK,
    now: float = NOW,
) -> int:
    return await store.save(
        integration=integration,
        connection_id=connection_id,
        provider="google",
        tokens=tokens,
        verdict=Verdict.REFRESHABLE,
        status=Status.ACTIVE,
        scopes_requested=("openid", "email"),
        next_check_at=next_check_at,
        now=now,
    )


async def saved(store: TokenStore, tokens: TokenSet | None = None) -> tuple[Connection, TokenSet]:
    integration, cid = new_name("it"), new_name("conn")
    await save(store, integration, cid, tokens or token_set())
    return await store.load(integration, cid)


async def stored_hash(redis: Redis, keys: Keys, connection: Connection) -> dict[str, str]:
    key = keys.connection(connection.integration, connection.connection_id)
    return cast(dict[str, str], await redis.hgetall(key))


async def scheduled_at(redis: Redis, keys: Keys, connection: Connection) -> float | None:
    member = keys.member(connection.integration, connection.connection_id)
    value = await redis.zscore(
        keys.schedule_of(connection.integration, connection.connection_id), member
    )
    return None if value is None else float(value)


async def test_save_with_next_check_at_schedules_the_connection(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, _ = await saved(store)

    assert await scheduled_at(redis, keys, connection) == NEXT_CHECK
    assert float((await stored_hash(redis, keys, connection))["next_refresh_at"]) == NEXT_CHECK
    assert connection.next_refresh_at == NEXT_CHECK


async def test_save_without_next_check_at_takes_it_off_the_schedule(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, _ = await saved(store)
    integration, cid = connection.integration, connection.connection_id

    await save(store, integration, cid, token_set(), next_check_at=None, now=NOW + 60)

    assert await scheduled_at(redis, keys, connection) is None
    assert "next_refresh_at" not in await stored_hash(redis, keys, connection)
    assert [await redis.zcard(keys.schedule(shard)) for shard in keys.all_shards] == [
        0
    ] * keys.shards


async def test_update_with_new_tokens_bumps_the_version_and_moves_the_schedule(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, _ = await saved(store)
    new = token_set(now=NOW + 3000)
    due = NOW + 6000.75

    version = await store.update(connection, now=NOW + 3000, tokens=new, schedule_at=due)

    assert version == connection.version + 1
    after, tokens = await store.load(connection.integration, connection.connection_id)
    assert tokens == new
    assert after.version == version
    assert after.updated_at == NOW + 3000
    assert after.created_at == connection.created_at
    assert after.next_refresh_at == due
    assert await scheduled_at(redis, keys, connection) == due


async def test_update_without_a_refresh_token_deletes_the_stored_one(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    """The store replaces the token set; keeping the old refresh token is the caller's rule."""
    connection, _ = await saved(store)
    new = token_set(refresh=False, expires=False)

    assert await store.update(connection, now=NOW + 60, tokens=new) == connection.version + 1

    stored = await stored_hash(redis, keys, connection)
    for gone in ("refresh_token", "expires_at", "lifetime_seconds", "scopes_granted"):
        assert gone not in stored, f"{gone!r} survived a token set that did not carry it"
    after, tokens = await store.load(connection.integration, connection.connection_id)
    assert tokens == new
    assert not after.has_refresh_token


async def test_update_with_a_refresh_token_replaces_it_encrypted(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, old = await saved(store)
    before = await stored_hash(redis, keys, connection)
    new = token_set(now=NOW + 60)
    assert new.refresh_token is not None and old.refresh_token is not None

    await store.update(connection, now=NOW + 60, tokens=new)

    stored = await stored_hash(redis, keys, connection)
    assert stored["refresh_token"] != before["refresh_token"]
    for name, value in stored.items():
        for secret in (new.access_token, new.refresh_token, old.access_token, old.refresh_token):
            assert secret not in value, f"plaintext token in field {name!r}"
    assert (await store.tokens(connection.integration, connection.connection_id)) == new


async def test_update_with_the_same_refresh_token_keeps_it(store: TokenStore) -> None:
    connection, old = await saved(store)
    new = TokenSet(
        access_token="access-" + uuid.uuid4().hex,
        token_type="Bearer",
        refresh_token=old.refresh_token,
        expires_at=NOW + 7200,
        lifetime_seconds=3599,
        lifetime_source="expires_in",
        granted_scopes=None,
    )

    await store.update(connection, now=NOW + 60, tokens=new)

    tokens = await store.tokens(connection.integration, connection.connection_id)
    assert tokens.refresh_token == old.refresh_token
    assert tokens.access_token == new.access_token


async def test_a_stale_version_writes_nothing(store: TokenStore, redis: Redis, keys: Keys) -> None:
    stale, _ = await saved(store)
    assert await store.update(stale, now=NOW + 10, tokens=token_set()) is not None
    hash_before = await stored_hash(redis, keys, stale)
    score_before = await scheduled_at(redis, keys, stale)

    result = await store.update(
        stale,
        now=NOW + 20,
        tokens=token_set(),
        set_fields={"status": Status.DEGRADED.value},
        delete_fields=("verdict",),
        schedule_at=NOW + 99_999,
    )

    assert result is None
    assert await stored_hash(redis, keys, stale) == hash_before
    assert await scheduled_at(redis, keys, stale) == score_before


async def test_a_stale_version_cannot_unschedule(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    stale, _ = await saved(store)
    await store.update(stale, now=NOW + 10, tokens=token_set())

    assert await store.update(stale, now=NOW + 20, unschedule=True) is None
    assert await scheduled_at(redis, keys, stale) == NEXT_CHECK


async def test_set_fields_without_tokens_bumps_the_version_and_sets_updated_at(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, tokens = await saved(store)

    version = await store.update(
        connection, now=NOW + 30, set_fields={"last_error": "temporarily_unavailable"}
    )

    assert version == connection.version + 1
    after, after_tokens = await store.load(connection.integration, connection.connection_id)
    assert after.version == connection.version + 1
    assert after.updated_at == NOW + 30
    assert after.last_error == "temporarily_unavailable"
    assert after_tokens == tokens
    assert await scheduled_at(redis, keys, connection) == NEXT_CHECK  # left as it was


async def test_delete_fields_removes_them(store: TokenStore, redis: Redis, keys: Keys) -> None:
    connection, _ = await saved(store)
    await store.update(
        connection,
        now=NOW + 1,
        set_fields={"consecutive_failures": "2", "last_error": "server_error"},
    )

    reloaded = await store.get(connection.integration, connection.connection_id)
    await store.update(reloaded, now=NOW + 2, delete_fields=("consecutive_failures", "last_error"))

    stored = await stored_hash(redis, keys, connection)
    assert "consecutive_failures" not in stored
    assert "last_error" not in stored
    assert stored["status"] == "active"  # only the named fields go


async def test_unschedule_removes_the_member_and_next_refresh_at(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, _ = await saved(store)
    assert await scheduled_at(redis, keys, connection) == NEXT_CHECK

    assert await store.update(connection, now=NOW + 5, unschedule=True) == connection.version + 1

    assert await scheduled_at(redis, keys, connection) is None
    assert "next_refresh_at" not in await stored_hash(redis, keys, connection)
    after = await store.get(connection.integration, connection.connection_id)
    assert after.next_refresh_at is None


async def test_of_two_concurrent_updates_from_one_load_exactly_one_wins(
    store: TokenStore,
) -> None:
    connection, _ = await saved(store)
    first, second = token_set(now=NOW + 60), token_set(now=NOW + 60)

    results = await asyncio.gather(
        store.update(connection, now=NOW + 60, tokens=first, schedule_at=NOW + 100),
        store.update(connection, now=NOW + 60, tokens=second, schedule_at=NOW + 200),
    )

    winners = [r for r in results if r is not None]
    assert winners == [connection.version + 1], results
    after, tokens = await store.load(connection.integration, connection.connection_id)
    assert tokens == (first if results[0] is not None else second)
    assert after.next_refresh_at == (NOW + 100 if results[0] is not None else NOW + 200)


async def test_load_reads_the_tokens_and_the_refresh_state(store: TokenStore) -> None:
    tokens = token_set()
    connection, loaded = await saved(store, tokens)
    assert loaded == tokens
    assert (connection.consecutive_failures, connection.failing_since) == (0, None)
    assert connection.expiry_alerts_sent == ()

    await store.update(
        connection,
        now=NOW + 90,
        set_fields={
            "consecutive_failures": "3",
            "failing_since": repr(NOW + 0.5),
            "expiry_alerts_sent": "604800.0,86400.0",
            "refresh_failing_alerted": "1",
            "failure_window_start": repr(NOW),
            "failure_window_count": "4",
            "last_error": "server_error",
        },
    )

    after, again = await store.load(connection.integration, connection.connection_id)
    assert again == tokens
    assert after.provider == "google"
    assert after.has_refresh_token
    assert after.consecutive_failures == 3
    assert after.failing_since == NOW + 0.5
    assert after.expiry_alerts_sent == (604800.0, 86400.0)
    assert after.refresh_failing_alerted
    assert after.failure_window_start == NOW
    assert after.failure_window_count == 4
    assert after.last_error == "server_error"


def an_event(connection: Connection) -> Event:
    # Nested values, None and non-ASCII text: the data must come out as it went in.
    return Event(
        TOKEN_REFRESHED,
        {
            "event_id": uuid.uuid4().hex,
            "integration": connection.integration,
            "connection_id": connection.connection_id,
            "refresh_token_rotated": True,
            "next_refresh_at": None,
            "scopes": ["openid", "email"],
            "note": "Größe ✓",
        },
    )


async def claimed(store: TokenStore, locks: Locks) -> tuple[Connection, Lease]:
    """A stored connection, taken for a refresh the way the engine takes it."""
    integration, cid = new_name("it"), new_name("conn")
    await save(store, integration, cid, token_set())
    claim = await locks.claim(integration, cid, "google", 5)
    assert claim.kind == "ok" and claim.connection is not None and claim.lease is not None
    assert claim.lease.slot_token is not None
    return claim.connection, claim.lease


async def published(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    """Every event written under the keys: each in its connection's shard's stream."""
    entries = await stream_entries(redis, keys)
    for entry_id, fields in entries:
        data = json.loads(fields["data"])
        shard = keys.shard(data["integration"], data["connection_id"])
        assert split_id(entry_id)[1] == shard, (entry_id, data)
    return [fields for _, fields in entries]


async def slot_members(redis: Redis, keys: Keys) -> list[str]:
    return cast(list[str], await redis.zrange(keys.provider_slots("google"), 0, -1))


async def test_an_update_with_an_event_and_a_lease_writes_publishes_and_gives_back(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    connection, lease = await claimed(store, locks)
    event = an_event(connection)
    assert await redis.exists(keys.lock(connection.integration, connection.connection_id))
    assert await slot_members(redis, keys) == [lease.slot_token]

    version = await store.update(
        connection, now=NOW + 60, tokens=token_set(), schedule_at=NOW + 6000, event=event,
        lease=lease,
    )  # fmt: skip

    assert version == connection.version + 1
    assert (await store.get(connection.integration, connection.connection_id)).version == version
    entries = await published(redis, keys)
    assert len(entries) == 1, entries
    assert set(entries[0]) == {"type", "data"}
    assert entries[0]["type"] == event.type
    assert json.loads(entries[0]["data"]) == event.data
    assert not await redis.exists(keys.lock(connection.integration, connection.connection_id))
    assert await slot_members(redis, keys) == []
    assert lease.released


async def test_a_stale_update_with_an_event_and_a_lease_only_gives_back(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    stale, lease = await claimed(store, locks)
    assert await store.update(stale, now=NOW + 10, set_fields={"last_error": "x"}) is not None
    hash_before = await stored_hash(redis, keys, stale)
    score_before = await scheduled_at(redis, keys, stale)

    result = await store.update(
        stale, now=NOW + 20, tokens=token_set(), schedule_at=NOW + 99_999,
        event=an_event(stale), lease=lease,
    )  # fmt: skip

    assert result is None
    assert await stored_hash(redis, keys, stale) == hash_before
    assert await scheduled_at(redis, keys, stale) == score_before
    assert await published(redis, keys) == []
    assert not await redis.exists(keys.lock(stale.integration, stale.connection_id))
    assert await slot_members(redis, keys) == []
    assert lease.released


async def test_an_update_with_an_event_but_no_lease_publishes_it(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    connection, _ = await saved(store)
    event = an_event(connection)

    assert await store.update(connection, now=NOW + 5, event=event) == connection.version + 1

    entries = await published(redis, keys)
    assert [(e["type"], json.loads(e["data"])) for e in entries] == [(event.type, event.data)]


async def test_an_update_with_an_expired_lease_leaves_the_new_holders_lock(
    store: TokenStore, locks: Locks, redis: Redis, keys: Keys
) -> None:
    """Our lock ran out and another worker took it: giving back ours must not free theirs."""
    connection, lease = await claimed(store, locks)
    lock = keys.lock(connection.integration, connection.connection_id)
    await redis.delete(lock)  # as if REFRESH_LOCK_TTL_SECONDS had passed
    newer = await locks.acquire(connection.integration, connection.connection_id)
    assert newer is not None and newer != lease.lock_token

    version = await store.update(connection, now=NOW + 60, event=an_event(connection), lease=lease)

    # The version, not the lock, decides whether the write lands.
    assert version == connection.version + 1
    assert await redis.get(lock) == newer
    assert await slot_members(redis, keys) == []  # our own slot still goes back
    assert lease.released
