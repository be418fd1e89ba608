"""get_access_token: fresh tokens as they are, stale ones refreshed once for everyone."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import Fakes, WorkerHandle, consent, event_types, exchange
from tokenlife.adapters.keys import Keys
from tokenlife.errors import ReauthorizationRequiredError, UnknownConnectionError
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


async def connect(tl: Tokenlife, worker: WorkerHandle, integration: str) -> tuple[str, str]:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, integration, cid, login_hint=cid)
    await exchange(worker, state=callback["state"], code=callback["code"])
    return cid, callback["code"]


async def test_a_fresh_token_is_returned_without_a_refresh(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid, family = await connect(tl, worker, "generic-offline")
    token = await tl.get_access_token("generic-offline", cid)
    assert token.token_type == "Bearer" and token.access_token in fakes.generic.issued_secrets
    assert fakes.generic.refreshes(family) == 0
    assert token.access_token not in repr(token)


async def test_a_token_inside_the_leeway_is_refreshed_once_for_ten_callers(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid, family = await connect(tl, worker, "generic-offline")
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic-offline", cid)
    await redis.hset(key, "expires_at", repr(time.time() + 30))  # inside the 60 s leeway
    fakes.generic.script_refresh(family, Reply(delay=0.3))  # a slow provider widens the race

    tokens = await asyncio.gather(*(tl.get_access_token("generic-offline", cid) for _ in range(10)))

    assert fakes.generic.refreshes(family) == 1
    assert fakes.generic.families[family].reuse_detected == 0
    assert len({t.access_token for t in tokens}) == 1
    assert all(t.expires_at is not None and t.expires_at > time.time() + 3000 for t in tokens)
    assert (await event_types(redis, settings, cid)).count("token.refreshed") == 1


async def test_a_connection_needing_reauthorization_raises(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid, family = await connect(tl, worker, "generic-offline")
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic-offline", cid)
    await redis.hset(key, "expires_at", repr(time.time() - 5))
    fakes.generic.script_refresh(family, Reply(status=400, body=b'{"error": "invalid_grant"}'))

    with pytest.raises(ReauthorizationRequiredError, match="invalid_grant"):
        await tl.get_access_token("generic-offline", cid)
    with pytest.raises(ReauthorizationRequiredError):  # and stays so, without asking again
        await tl.get_access_token("generic-offline", cid)
    assert "alert.reauthorization_required" in await event_types(redis, settings, cid)


async def test_an_expired_token_without_refresh_token_raises(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid, _ = await connect(tl, worker, "generic")  # no offline_access: no refresh token
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic", cid)
    await redis.hset(key, "expires_at", repr(time.time() - 5))
    with pytest.raises(ReauthorizationRequiredError, match="no refresh token"):
        await tl.get_access_token("generic", cid)


async def test_an_unknown_connection_raises(tl: Tokenlife) -> None:
    with pytest.raises(UnknownConnectionError):
        await tl.get_access_token("generic", "nobody")


async def test_a_refresh_that_returns_an_already_short_token_is_not_repeated(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid, family = await connect(tl, worker, "generic-offline")
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic-offline", cid)
    await redis.hset(key, "expires_at", repr(time.time() + 30))
    fakes.generic.script_refresh(family, Reply(jwt_exp=int(time.time()) - 60))

    token = await tl.get_access_token("generic-offline", cid)

    assert fakes.generic.refreshes(family) == 1  # one request, no loop against the provider
    assert token.expires_at is not None and token.expires_at < time.time()
