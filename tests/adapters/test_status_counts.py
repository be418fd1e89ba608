"""Connections by status, kept by the scripts that write a status: a save (new, or a
reconnect that changes it), an update that changes it, a delete; and counted afresh from
the records when they were never whole (an upgraded deployment)."""

from __future__ import annotations

import time
from typing import cast

import pytest
from redis.asyncio import Redis

from tests.adapters.test_claim import in_shard, new_name, saved
from tokenlife.adapters import scripts
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.status_counts import CountsIncomplete, StatusCounts
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status


async def fields(
    redis: Redis, keys: Keys, integration: str, shard: int | None = None
) -> dict[str, int]:
    """The counts of `integration` by status: one shard's, or every shard's added up."""
    found: dict[str, int] = {}
    for one in keys.all_shards if shard is None else [shard]:
        raw = cast(dict[str, str], await redis.hgetall(keys.status_counts(one)))
        for f, v in raw.items():
            if f.startswith(f"{integration}:"):
                status = f.rpartition(":")[2]
                found[status] = found.get(status, 0) + int(v)
    return {status: n for status, n in found.items() if n}


async def forget_counts(redis: Redis, keys: Keys) -> None:
    """As before the upgrade: records, no counts."""
    await redis.delete(*(keys.status_counts(shard) for shard in keys.all_shards))


async def test_every_status_write_moves_the_counts_in_the_same_step(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    counts = StatusCounts(redis, keys)
    await counts.recount(time.time())  # whole from the start: nothing stored yet
    integration = new_name("it")
    a = await saved(store, "custom", integration=integration,
                    connection_id=in_shard(keys, integration, 2))  # fmt: skip
    b = await saved(store, "custom", integration=integration,
                    connection_id=in_shard(keys, integration, 9))  # fmt: skip
    assert await fields(redis, keys, integration) == {"active": 2}
    # Each counted in its own shard's counts.
    assert await fields(redis, keys, integration, 2) == {"active": 1}
    assert await fields(redis, keys, integration, 9) == {"active": 1}

    connection = await store.get(integration, a[1])
    await store.update(connection, now=time.time(), set_fields={"status": "degraded"})
    assert await fields(redis, keys, integration) == {"active": 1, "degraded": 1}
    assert await fields(redis, keys, integration, 2) == {"degraded": 1}
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

    # A new connection (in shard 2: shard 9's count is checked empty below) counts once.
    await saved(store, "custom", integration=integration,
                connection_id=in_shard(keys, integration, 2))  # fmt: skip
    assert await fields(redis, keys, integration) == {"active": 3}
    assert await store.delete(integration, b[1], "custom")
    assert not await store.delete(integration, b[1], "custom")  # gone: counted once
    assert await fields(redis, keys, integration) == {"active": 2}
    assert await fields(redis, keys, integration, 9) == {}
    assert (await counts.read([integration], time.time()))[Status.ACTIVE.value] == 2


async def test_counts_never_made_whole_are_counted_from_the_records(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration = new_name("it")
    for shard in (1, 1, 13):
        await saved(store, "custom", integration=integration,
                    connection_id=in_shard(keys, integration, shard))  # fmt: skip
    await forget_counts(redis, keys)
    counts = StatusCounts(redis, keys)

    by_status = await counts.read([integration], time.time())

    assert by_status == {"active": 3, "degraded": 0, "reauthorization_required": 0}
    assert await fields(redis, keys, integration, 1) == {"active": 2}
    assert await fields(redis, keys, integration, 13) == {"active": 1}
    for shard in keys.all_shards:  # every shard whole, the empty ones too
        assert await redis.hexists(keys.status_counts(shard), "_counted_at"), shard


async def test_a_recount_loses_no_write_made_during_its_walk(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    """The walk counts page by page while statuses change: a change to a connection it has
    counted, one to a connection it has not reached, a save and a delete in between."""
    integration, shard = new_name("it"), 6
    ids = [
        (await saved(store, "custom", integration=integration,
                     connection_id=in_shard(keys, integration, shard)))[1]
        for _ in range(4)
    ]  # fmt: skip
    counts = StatusCounts(redis, keys)
    status_counts, flag, walked, shadow, *_ = keys.status_count_keys(shard)
    # A recount of the shard whose walk has counted the first two so far.
    await redis.set(flag, "recount-token", px=60_000)
    assert await counts._count(shard, integration, ids[:2], "recount-token")

    counted = await store.get(integration, ids[0])
    await store.update(counted, now=time.time(), set_fields={"status": "degraded"})
    ahead = await store.get(integration, ids[2])
    await store.update(ahead, now=time.time(), set_fields={"status": "reauthorization_required"})
    new = (await saved(store, "custom", integration=integration,
                       connection_id=in_shard(keys, integration, shard)))[1]  # fmt: skip
    assert await store.delete(integration, ids[1], "custom")

    # The walk goes on over every id it finds (the new one included: counted already).
    assert await counts._count(shard, integration, [*ids[2:], new], "recount-token")
    finish = scripts.register(redis, "finish_recount")
    assert await finish(keys=[flag, walked, shadow, status_counts],
                        args=["recount-token", repr(time.time())])  # fmt: skip

    assert await fields(redis, keys, integration, shard) == {
        "active": 2, "degraded": 1, "reauthorization_required": 1,
    }  # fmt: skip
    assert not await redis.exists(flag, walked, shadow)


async def test_a_read_while_another_process_counts_fails_rather_than_say_half(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration = new_name("it")
    await saved(store, "custom", integration=integration)
    await forget_counts(redis, keys)
    # Another process is counting one shard (a late one: the earlier ones are counted here).
    _, flag, *_ = keys.status_count_keys(keys.shards - 1)
    await redis.set(flag, "another-process", px=60_000)
    counts = StatusCounts(redis, keys)

    with pytest.raises(CountsIncomplete):
        await counts.read([integration], time.time())
    assert await counts.recount(time.time()) is None
    await redis.delete(flag)
    assert (await counts.read([integration], time.time()))["active"] == 1
