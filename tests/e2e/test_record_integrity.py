"""Half-written connection records (issue 9 §4): a record with missing fields or bad
numbers is a JSON 404, never a 500. (A late write never re-creates a deleted connection:
every write to a connection is a compare-and-set on its version, update_connection.lua.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.support import Fakes
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import CorruptRecordError
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

KEY = "record-integrity-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def runtime(settings: Settings, fakes: Fakes) -> AsyncIterator[Runtime]:
    configured = settings.model_copy(update={"api_keys": (KEY,)})
    opened = await Runtime.open(await load_config(configured))
    yield opened
    await opened.close()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as test_client:
        yield test_client


async def save(runtime: Runtime, connection_id: str) -> None:
    await runtime.tokens.save(
        integration="google", connection_id=connection_id, provider="google",
        tokens=TokenSet(access_token="access-" + uuid.uuid4().hex, token_type="Bearer",
                        refresh_token="refresh-" + uuid.uuid4().hex,
                        expires_at=time.time() + 3600, lifetime_seconds=3600,
                        lifetime_source="expires_in", granted_scopes=("openid",)),
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=("openid",),
        next_check_at=None, now=time.time(),
    )  # fmt: skip


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param({"delete": ["status", "version"]}, id="missing-fields"),
        pytest.param({"set": {"expires_at": "soon"}}, id="bad-number"),
        pytest.param({"set": {"status": "sideways"}}, id="bad-status"),
        pytest.param({"set": {"last_alert": "{not json"}}, id="bad-json"),
        pytest.param({"only": {"last_alert": "{}"}}, id="only-an-alert"),
    ],
)
async def test_a_damaged_record_is_a_json_404_never_a_500(
    runtime: Runtime, client: TestClient[Any, Any], redis: Redis, damage: dict[str, Any]
) -> None:
    cid = f"damaged-{uuid.uuid4().hex[:8]}"
    key = runtime.keys.connection("google", cid)
    if "only" in damage:
        await redis.hset(key, mapping=damage["only"])
    else:
        await save(runtime, cid)
        if "delete" in damage:
            await redis.hdel(key, *damage["delete"])
        if "set" in damage:
            await redis.hset(key, mapping=damage["set"])
    await redis.sadd(runtime.keys.connections("google"), cid)

    with pytest.raises(CorruptRecordError):
        await runtime.tokens.get("google", cid)
    for method, path in [
        ("GET", f"/api/connections/google/{cid}"),
        ("POST", f"/api/connections/google/{cid}/token"),
    ]:
        response = await client.request(method, path, headers=AUTH)
        body = await response.json()
        assert response.status == 404, (method, body)
        assert body["error"] == "not_found" and body["corrupt_record"] is True
        assert "connect again" in body["message"]
    listing = await client.get("/api/connections?integration=google", headers=AUTH)
    assert listing.status == 200
    assert cid not in [c["connection_id"] for c in (await listing.json())["connections"]]
    await redis.delete(key)
    await redis.srem(runtime.keys.connections("google"), cid)
