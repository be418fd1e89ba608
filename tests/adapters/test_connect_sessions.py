"""ConnectSessions against the real Redis: only the hash is stored, a token works once,
for its TTL, and only for its integration."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tests.support import wait_until
from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.keys import Keys
from tokenlife.core.connect_session import ConnectSession, SessionRequest, token_hash
from tokenlife.settings import Settings

NOW = 1_700_000_000.5
TTL = 1800


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def sessions(redis: Redis, keys: Keys) -> ConnectSessions:
    return ConnectSessions(redis, keys, TTL)


def request(**end_user: str) -> SessionRequest:
    return SessionRequest(
        integration="it-" + uuid.uuid4().hex[:12],
        connection_id="conn-" + uuid.uuid4().hex[:12],
        return_to="https://app.example.com/done",
        end_user=end_user or None,
    )


async def test_a_session_is_stored_under_the_hash_of_its_token_only(
    sessions: ConnectSessions, redis: Redis, keys: Keys, settings: Settings
) -> None:
    wanted = request(id="42", email="ada@example.com")
    token, session = await sessions.create(wanted, NOW)

    assert len(token) >= 43  # 32 random bytes, url-safe base64
    stored = [k async for k in redis.scan_iter(f"{settings.key_prefix}:connect-session:*")]
    assert keys.connect_session(wanted.integration, token_hash(token)) in stored
    for key in stored:
        assert token not in key
        value = await redis.get(key)
        assert value is not None and token not in value
    assert session.expires_at == NOW + TTL and session.end_user == {
        "id": "42",
        "email": "ada@example.com",
    }


async def test_a_token_works_once(sessions: ConnectSessions) -> None:
    wanted = request(id="42")
    token, created = await sessions.create(wanted, NOW)

    used = await sessions.consume(wanted.integration, token)

    assert used == created
    assert used == ConnectSession(wanted.integration, wanted.connection_id, wanted.return_to,
                                  {"id": "42"}, NOW, NOW + TTL)  # fmt: skip
    assert await sessions.consume(wanted.integration, token) is None


async def test_a_session_lives_for_its_ttl_then_is_gone(
    sessions: ConnectSessions, redis: Redis, keys: Keys
) -> None:
    wanted = request()
    token, _ = await sessions.create(wanted, NOW)
    key = keys.connect_session(wanted.integration, token_hash(token))
    assert TTL - 10 <= await redis.ttl(key) <= TTL

    await redis.pexpire(key, 1)  # what the TTL does after 30 minutes
    await wait_until(lambda: _gone(redis, key), timeout=5, what=f"{key} to expire")

    assert await sessions.consume(wanted.integration, token) is None


async def test_the_ttl_is_the_configured_one(redis: Redis, keys: Keys) -> None:
    short = ConnectSessions(redis, keys, 60)
    wanted = request()
    token, session = await short.create(wanted, NOW)
    assert 50 <= await redis.ttl(keys.connect_session(wanted.integration, token_hash(token))) <= 60
    assert session.expires_at == NOW + 60


async def test_a_token_presented_for_another_integration_finds_nothing_and_stays_usable(
    sessions: ConnectSessions,
) -> None:
    wanted = request()
    token, created = await sessions.create(wanted, NOW)

    assert await sessions.consume("another-" + wanted.integration, token) is None
    assert await sessions.consume(wanted.integration, token) == created


async def test_unknown_tokens_find_nothing(sessions: ConnectSessions) -> None:
    wanted = request()
    token, _ = await sessions.create(wanted, NOW)
    assert await sessions.consume(wanted.integration, token[:-1]) is None
    assert await sessions.consume(wanted.integration, token_hash(token)) is None  # the hash
    assert await sessions.consume(wanted.integration, token) is not None


async def test_of_concurrent_uses_of_one_token_exactly_one_wins(
    sessions: ConnectSessions,
) -> None:
    wanted = request()
    token, created = await sessions.create(wanted, NOW)

    results = await asyncio.gather(*(sessions.consume(wanted.integration, token)
                                     for _ in range(20)))  # fmt: skip

    assert [r for r in results if r is not None] == [created]


async def _gone(redis: Redis, key: str) -> bool:
    return await redis.exists(key) == 0
