"""Half-written connection records (issue 9 §4): a record with missing fields or bad
numbers is a JSON 404, never a 500; DELETE removes it; the scheduled refresh takes it off
the schedule without holding a lock or a provider slot. A ciphertext no key decrypts is a
JSON 409 `undecryptable`. (A late write never re-creates a deleted connection:
every write to a connection is a compare-and-set on its version, update_connection.lua.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, make_due, run_refresh_tick, wait_until
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
    index = runtime.keys.connections("google", runtime.keys.shard("google", cid))
    await redis.zadd(index, {cid: 0})

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
    await redis.zrem(index, cid)


async def damaged(runtime: Runtime, redis: Redis, how: str = "missing-fields") -> str:
    """A saved google connection with two required fields cut off (or a number that isn't
    one), on the schedule."""
    cid = f"damaged-{uuid.uuid4().hex[:8]}"
    await save(runtime, cid)
    key = runtime.keys.connection("google", cid)
    if how == "bad-number":
        await redis.hset(key, "expires_at", "soon")
    else:
        await redis.hdel(key, "status", "version")
    return cid


async def leftovers(runtime: Runtime, redis: Redis, cid: str) -> dict[str, Any]:
    """Every place a connection lives in Redis, and what it holds there now."""
    keys, member = runtime.keys, runtime.keys.member("google", cid)
    shard = keys.shard("google", cid)
    return {
        "hash": await redis.exists(keys.connection("google", cid)),
        "index": await redis.zscore(keys.connections("google", shard), cid) is not None,
        "schedule": await redis.zscore(keys.schedule(shard), member),
        "deadline": await redis.zscore(keys.token_deadlines(shard), member),
        "backoff": await redis.zscore(keys.backoff("google", shard), member),
        "lock": await redis.exists(keys.lock("google", cid)),
    }


GONE = {"hash": 0, "index": 0, "schedule": None, "deadline": None, "backoff": None, "lock": 0}


async def test_delete_removes_a_damaged_record_without_revoking(
    runtime: Runtime, client: TestClient[Any, Any], redis: Redis, fakes: Fakes
) -> None:
    cid = await damaged(runtime, redis)
    member, shard = runtime.keys.member("google", cid), runtime.keys.shard("google", cid)
    await redis.zadd(runtime.keys.token_deadlines(shard), {member: time.time() + 3600})
    await redis.zadd(runtime.keys.backoff("google", shard), {member: time.time()})
    revoked_before = len(fakes.google.revoked_tokens)

    response = await client.delete(f"/api/connections/google/{cid}", headers=AUTH)

    body = await response.json()
    assert response.status == 200, body
    assert body["deleted"] is True and body["revoked"] is False
    assert body["revocation_supported"] is True and body["revocation_error"] is None
    assert "record is incomplete or unreadable" in body["revocation_reason"]
    assert len(fakes.google.revoked_tokens) == revoked_before
    assert await leftovers(runtime, redis, cid) == GONE
    again = await client.delete(f"/api/connections/google/{cid}", headers=AUTH)
    assert again.status == 404


async def test_a_token_no_key_decrypts_is_a_409_and_delete_still_removes_it(
    runtime: Runtime, client: TestClient[Any, Any], redis: Redis, fakes: Fakes
) -> None:
    cid = f"undecryptable-{uuid.uuid4().hex[:8]}"
    await save(runtime, cid)
    await redis.hset(runtime.keys.connection("google", cid), "refresh_token", "gAAAAAdamaged")
    revoked_before = len(fakes.google.revoked_tokens)

    # Fresh access token, so no refresh: the stored refresh token is still read (load).
    response = await client.post(f"/api/connections/google/{cid}/token", headers=AUTH)
    body = await response.json()
    assert response.status == 409, body
    assert body["error"] == "undecryptable"
    assert "TOKENLIFE_ENCRYPTION_KEYS" in body["message"]
    assert "generat" not in body["message"]  # a new key would not decrypt it

    deleted = await client.delete(f"/api/connections/google/{cid}", headers=AUTH)
    answer = await deleted.json()
    assert deleted.status == 200, answer
    assert answer["revoked"] is False and "can't be decrypted" in answer["revocation_reason"]
    assert len(fakes.google.revoked_tokens) == revoked_before
    assert await leftovers(runtime, redis, cid) == GONE


@pytest.mark.parametrize("how", ["missing-fields", "bad-number"])
async def test_a_due_damaged_record_leaves_the_schedule_and_holds_no_slot(
    runtime: Runtime, redis: Redis, settings: Settings, worker: WorkerHandle, how: str
) -> None:
    """Before: the claim took the lock and a slot, then failed to parse, held both until
    their TTL and counted `crashed`; every lease brought it back. A bad number failed
    inside the claim script itself."""
    cid = await damaged(runtime, redis, how)
    await make_due(redis, settings, "google", cid)
    counters = runtime.keys.counters
    field, crashed = "refresh:google:corrupt_record", "refresh:google:crashed"
    before = int(await redis.hget(counters, field) or 0)
    crashed_before = await redis.hget(counters, crashed)
    slots_before = await redis.zcard(runtime.keys.provider_slots("google"))

    await run_refresh_tick(worker)

    async def counted() -> bool:
        return int(await redis.hget(counters, field) or 0) == before + 1

    await wait_until(counted, timeout=20, what="the corrupt record's outcome")
    schedule = runtime.keys.schedule_of("google", cid)
    assert await redis.zscore(schedule, runtime.keys.member("google", cid)) is None
    assert not await redis.exists(runtime.keys.lock("google", cid))
    assert await redis.zcard(runtime.keys.provider_slots("google")) <= slots_before
    assert await redis.hget(counters, crashed) == crashed_before
    await redis.delete(runtime.keys.connection("google", cid))
    await redis.zrem(runtime.keys.connections("google", runtime.keys.shard("google", cid)), cid)


async def test_a_due_refresh_token_no_key_decrypts_is_counted_and_looked_at_hourly(
    runtime: Runtime, redis: Redis, settings: Settings, worker: WorkerHandle
) -> None:
    """Before: the decrypt raised inside the batch, counted `crashed`, and the connection
    came back every lease."""
    cid = f"undecryptable-due-{uuid.uuid4().hex[:8]}"
    await save(runtime, cid)
    await redis.hset(runtime.keys.connection("google", cid), "refresh_token", "gAAAAAdamaged")
    await make_due(redis, settings, "google", cid)
    counters = runtime.keys.counters
    field, crashed = "refresh:google:undecryptable", "refresh:google:crashed"
    before = int(await redis.hget(counters, field) or 0)
    crashed_before = await redis.hget(counters, crashed)

    await run_refresh_tick(worker)

    async def counted() -> bool:
        return int(await redis.hget(counters, field) or 0) == before + 1

    await wait_until(counted, timeout=20, what="the undecryptable outcome")
    assert await redis.hget(counters, crashed) == crashed_before
    schedule = runtime.keys.schedule_of("google", cid)
    due = await redis.zscore(schedule, runtime.keys.member("google", cid))
    assert due is not None and due > time.time() + 3000
    assert await redis.hget(runtime.keys.connection("google", cid), "last_error") == "undecryptable"
    assert not await redis.exists(runtime.keys.lock("google", cid))
    await runtime.tokens.delete("google", cid, "google")
