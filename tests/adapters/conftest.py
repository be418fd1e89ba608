"""Fixtures of the adapter tests that store connections: a key prefix of the test's own, so
nothing it writes meets another test's keys in the shared Redis."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import Locks
from tokenlife.adapters.token_store import TokenStore
from tokenlife.settings import Settings


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def cipher(settings: Settings) -> Cipher:
    return Cipher(settings.encryption_keys or (Fernet.generate_key().decode(),))


@pytest.fixture
def store(redis: Redis, keys: Keys, cipher: Cipher) -> TokenStore:
    return TokenStore(redis, keys, cipher)


@pytest.fixture
def locks(redis: Redis, keys: Keys) -> Locks:
    return Locks(redis, keys)
