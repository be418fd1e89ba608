"""TokenStore against the real Redis: encrypted token values, readable metadata, full replace."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.events import iso8601
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import DecryptionError, UnknownConnectionError
from tokenlife.settings import Settings

NOW = 1_700_000_000.25


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def new_key() -> str:
    return Fernet.generate_key().decode()


def token_set(*, refresh: bool = True, expires: bool = True) -> TokenSet:
    # Long, unique values: a substring search for them can't match by accident.
    return TokenSet(
        access_token="access-" + uuid.uuid4().hex + uuid.uuid4().hex,
        token_type="Bearer",
        refresh_token="refresh-" + uuid.uuid4().hex + uuid.uuid4().hex if refresh else None,
        expires_at=NOW + 3599 if expires else None,
        lifetime_seconds=3599 if expires else None,
        lifetime_source="expires_in" if expires else None,
        granted_scopes=("openid", "email") if expires else None,
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def store(redis: Redis, keys: Keys, settings: Settings) -> TokenStore:
    # Read at NOW: `get` shows a lapsed token's effective status.
    return TokenStore(
        redis, keys, Cipher(settings.encryption_keys or (new_key(),)), clock=lambda: NOW
    )


async def save(
    store: TokenStore, integration: str, connection_id: str, tokens: TokenSet, now: float = NOW
) -> int:
    return await store.save(
        integration=integration,
        connection_id=connection_id,
        provider="google",
        tokens=tokens,
        verdict=Verdict.REFRESHABLE if tokens.refresh_token else Verdict.REFRESH_TOKEN_MISSING,
        status=Status.ACTIVE if tokens.refresh_token else Status.DEGRADED,
        scopes_requested=("openid", "email", "profile"),
        next_check_at=None,
        now=now,
    )


async def stored_hash(
    redis: Redis, keys: Keys, integration: str, connection_id: str
) -> dict[str, str]:
    return cast(dict[str, str], await redis.hgetall(keys.connection(integration, connection_id)))


async def test_the_hash_holds_no_plaintext_token(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration, cid = new_name("it"), new_name("conn")
    tokens = token_set()
    assert tokens.refresh_token is not None

    await save(store, integration, cid, tokens)

    stored = await stored_hash(redis, keys, integration, cid)
    assert {"access_token", "refresh_token"} <= stored.keys()
    for name, value in stored.items():
        assert tokens.access_token not in value, f"plaintext access token in field {name!r}"
        assert tokens.refresh_token not in value, f"plaintext refresh token in field {name!r}"


async def test_metadata_fields_are_readable(store: TokenStore, redis: Redis, keys: Keys) -> None:
    integration, cid = new_name("it"), new_name("conn")

    await save(store, integration, cid, token_set())

    stored = await stored_hash(redis, keys, integration, cid)
    assert stored["integration"] == integration
    assert stored["connection_id"] == cid
    assert stored["provider"] == "google"
    assert stored["status"] == "active"
    assert stored["verdict"] == "refreshable"
    assert stored["token_type"] == "Bearer"
    assert float(stored["expires_at"]) == NOW + 3599
    assert stored["lifetime_seconds"] == "3599"
    assert stored["lifetime_source"] == "expires_in"
    assert stored["scopes_requested"] == "openid email profile"
    assert stored["scopes_granted"] == "openid email"
    assert float(stored["created_at"]) == NOW
    assert float(stored["updated_at"]) == NOW
    assert stored["version"] == "1"


async def test_get_reads_the_connection_without_token_values(store: TokenStore) -> None:
    integration, cid = new_name("it"), new_name("conn")

    await save(store, integration, cid, token_set())

    connection = await store.get(integration, cid)
    assert connection.as_json() == {
        "integration": integration,
        "connection_id": cid,
        "provider": "google",
        "status": "active",
        "status_reason": None,
        "verdict": "refreshable",
        "token_type": "Bearer",
        "expires_at": "2023-11-14T23:13:19.250000Z",
        "access_token_lifetime_seconds": 3599,
        "lifetime_source": "expires_in",
        "scopes_requested": ["openid", "email", "profile"],
        "scopes_granted": ["openid", "email"],
        "has_refresh_token": True,
        "created_at": "2023-11-14T22:13:20.250000Z",
        "updated_at": "2023-11-14T22:13:20.250000Z",
        "version": 1,
        "next_refresh_at": None,
        "last_refreshed_at": iso8601(NOW),
        "consecutive_failures": 0,
        "failing_since": None,
        "last_error": None,
        "last_alert": None,
        "subject": None,
    }


async def test_a_second_save_keeps_created_at_updates_updated_at_and_bumps_version(
    store: TokenStore,
) -> None:
    integration, cid = new_name("it"), new_name("conn")

    first = await save(store, integration, cid, token_set(), now=NOW)
    second = await save(store, integration, cid, token_set(), now=NOW + 60)

    assert (first, second) == (1, 2)
    connection = await store.get(integration, cid)
    assert connection.created_at == NOW
    assert connection.updated_at == NOW + 60
    assert connection.version == 2


async def test_a_save_replaces_the_whole_hash(store: TokenStore, redis: Redis, keys: Keys) -> None:
    integration, cid = new_name("it"), new_name("conn")
    await save(store, integration, cid, token_set(refresh=True, expires=True))

    await save(store, integration, cid, token_set(refresh=False, expires=False), now=NOW + 60)

    stored = await stored_hash(redis, keys, integration, cid)
    for gone in ("refresh_token", "expires_at", "lifetime_seconds", "scopes_granted"):
        assert gone not in stored, f"{gone!r} survived a save that did not carry it"
    connection = await store.get(integration, cid)
    assert not connection.has_refresh_token
    assert connection.status is Status.DEGRADED
    assert (await store.tokens(integration, cid)).refresh_token is None


async def test_tokens_decrypts_the_stored_token_set(store: TokenStore) -> None:
    integration, cid = new_name("it"), new_name("conn")
    tokens = token_set()

    await save(store, integration, cid, tokens)

    assert await store.tokens(integration, cid) == tokens


async def test_a_rotated_key_list_decrypts_values_written_with_the_old_key(
    redis: Redis, keys: Keys
) -> None:
    integration, cid = new_name("it"), new_name("conn")
    old, new = new_key(), new_key()
    tokens = token_set()
    await save(TokenStore(redis, keys, Cipher((old,))), integration, cid, tokens)

    rotated = TokenStore(redis, keys, Cipher((new, old)))

    assert await rotated.tokens(integration, cid) == tokens
    # The first key encrypts: once re-saved, the old key can be dropped.
    await save(rotated, integration, cid, tokens, now=NOW + 60)
    assert await TokenStore(redis, keys, Cipher((new,))).tokens(integration, cid) == tokens


async def test_an_unrelated_key_raises_decryption_error(redis: Redis, keys: Keys) -> None:
    integration, cid = new_name("it"), new_name("conn")
    await save(TokenStore(redis, keys, Cipher((new_key(),))), integration, cid, token_set())

    stranger = TokenStore(redis, keys, Cipher((new_key(),)))

    with pytest.raises(DecryptionError):
        await stranger.tokens(integration, cid)
    # Metadata needs no key.
    assert (await stranger.get(integration, cid)).connection_id == cid


async def test_an_unknown_connection_raises_unknown_connection_error(store: TokenStore) -> None:
    integration = new_name("it")
    await save(store, integration, new_name("conn"), token_set())

    with pytest.raises(UnknownConnectionError):
        await store.get(integration, new_name("missing"))
    with pytest.raises(UnknownConnectionError):
        await store.tokens(integration, new_name("missing"))
    with pytest.raises(UnknownConnectionError):
        await store.get(new_name("missing-it"), new_name("missing"))


async def test_get_shows_an_active_connection_whose_token_lapsed_as_degraded(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    """No refresh attempted (integration unavailable, no worker): the stored status stays
    `active`, but readers see `degraded` with the reason; the refresh path reads the
    stored status."""
    cipher = Cipher(settings.encryption_keys or (new_key(),))
    integration, cid = new_name("it"), new_name("conn")
    tokens = token_set()
    expires_at = tokens.expires_at
    assert expires_at is not None
    await save(TokenStore(redis, keys, cipher), integration, cid, tokens)

    before = TokenStore(redis, keys, cipher, clock=lambda: expires_at - 1)
    after = TokenStore(redis, keys, cipher, clock=lambda: expires_at + 1)

    fresh = (await before.get(integration, cid)).as_json()
    assert (fresh["status"], fresh["status_reason"]) == ("active", None)
    lapsed = (await after.get(integration, cid)).as_json()
    assert (lapsed["status"], lapsed["status_reason"]) == ("degraded", "refresh_overdue")
    assert (await stored_hash(redis, keys, integration, cid))["status"] == "active"
    assert (await after.load(integration, cid))[0].status is Status.ACTIVE
