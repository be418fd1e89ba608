"""Connections by status, kept by the scripts that write a status: a save (new, or a
reconnect that changes it), an update that changes it, a delete; and counted afresh from
the records when they were never whole (an upgraded deployment)."""

from __future__ import annotations

import time
from typing import cast

from redis.asyncio import Redis

from tests.adapters.test_claim import new_name, saved
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.status_counts import StatusCounts
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status


async def fields(redis: Redis, keys: Keys, integration: str) -> dict[str, int]:
    raw = cast(dict[str, str], await redis.hgetall(keys.status_counts))
    return {f.rpartition(":")[2]: int(v) for f, v in raw.items()
            if f.startswith(f"{integration}:") and int(v)}  # fmt: skip


async def test_every_status_write_moves_the_counts_in_the_same_step(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    counts = StatusCounts(redis, keys)
    await counts.recount(time.time())  # whole from the start: nothing stored yet
    integration = new_name("it")
    a = await saved(store, "custom", integration=integration)
    b = await saved(store, "custom", integration=integration)
    assert await fields(redis, keys, integration) == {"active": 2}

    connection = await store.get(integration, a[1])
    await store.update(connection, now=time.time(), set_fields={"status": "degraded"})
    assert await fields(redis, keys, integration) == {"active": 1, "degraded": 1}
    # A write that leaves the status as it is counts nothing.
    connection = await store.get(integration, a[1])
    await store.update(connection, now=time.time(), set_fields={"last_error": "timeout"})
    assert await fields(redis, keys, integration) == {"active": 1, "degraded": 1}
    # Back to active; then a conflicting write (the stale version) lands nothing and
    # counts nothing.
    stale = connection
    connection = await store.get(integration, a[1])
    assert await store.update(connection, now=time.time(), set_fields={"status": "active"})
    assert await store.update(stale, now=time.time(), set_fields={"status": "degraded"}) is None
    assert await fields(redis, keys, integration) == {"active": 2}

    # A reconnect saves the record again: counted once, as its new status.
    await saved(store, "custom", integration=integration)
    assert await fields(redis, keys, integration) == {"active": 3}
    assert await store.delete(integration, b[1], "custom")
    assert not await store.delete(integration, b[1], "custom")  # gone: counted once
    assert await fields(redis, keys, integration) == {"active": 2}
    assert (await counts.read([integration], time.time()))[Status.ACTIVE.value] == 2


async def test_counts_never_made_whole_are_counted_from_the_records(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration = new_name("it")
    for _ in range(3):
        await saved(store, "custom", integration=integration)
    # As before the upgrade: records, no counts.
    await redis.delete(keys.status_counts)
    counts = StatusCounts(redis, keys)

    by_status = await counts.read([integration], time.time())

    assert by_status == {"active": 3, "degraded": 0, "reauthorization_required": 0}
    assert await redis.hexists(keys.status_counts, "_counted_at")
