"""tokenlife.event_handlers with the event streams on a real three-master Redis Cluster:
reads poll every shard (no blocking read across slots), claims go to every node, and a
dead letter and its acknowledgement are one MULTI in the entry's slot."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tests.cluster_process import ClusterProcess
from tests.support import wait_until
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import open_client
from tokenlife.event_handlers import Event, EventHandlers
from tokenlife.settings import Settings

pytestmark = pytest.mark.cluster


@pytest.fixture
def on_cluster(settings: Settings, redis_cluster: ClusterProcess) -> Settings:
    return settings.model_copy(update={
        "redis_url": redis_cluster.url,
        "broker_url": settings.redis_url,
        "key_prefix": f"cluster-eh-{uuid.uuid4().hex[:8]}",
    })  # fmt: skip


@pytest.fixture
async def cluster(on_cluster: Settings) -> AsyncIterator[Redis]:
    client = open_client(on_cluster.redis_url, max_connections=8, wait_seconds=5,
                         health_check_seconds=10, retries=3)  # fmt: skip
    assert isinstance(client, RedisCluster)
    yield cast(Redis, client)
    await client.aclose()


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


async def test_handlers_retries_and_dead_letters_on_the_cluster(
    on_cluster: Settings, cluster: Redis
) -> None:
    stream = EventStream(cluster, Keys(on_cluster.key_prefix, on_cluster.redis_shards), 1000)
    handled: list[str] = []
    failures: list[str] = []
    handlers = EventHandlers("app", start="0", max_deliveries=2, claim_idle_seconds=0.3)

    @handlers.on("connection.*")
    async def connected(event: Event) -> None:
        if event.connection_id == "flaky" and "flaky" not in failures:
            failures.append("flaky")
            raise RuntimeError("once")
        handled.append(str(event.connection_id))

    @handlers.on("alert.*")
    def poisoned(event: Event) -> None:
        raise RuntimeError("always")

    # Spread over the shards, so over the three masters.
    ids = [f"user-{n}" for n in range(12)]
    for connection_id in [*ids, "flaky"]:
        await stream.emit("connection.authorized", "google", connection_id, time.time())
    await stream.emit("alert.refresh_failing", "google", "poison", time.time())

    stop = asyncio.Event()
    task = asyncio.ensure_future(handlers.consume("c1", settings=on_cluster, stop=stop,
                                                 block_ms=300))  # fmt: skip
    try:
        await wait_until(holds(lambda: len(handled) == 13), timeout=20, what="every event")

        async def dead_lettered() -> bool:
            return len(await handlers.dead_letters(settings=on_cluster)) == 1

        await wait_until(dead_lettered, timeout=20, what="the dead letter")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    assert sorted(handled) == sorted([*ids, "flaky"])
    [letter] = await handlers.dead_letters(settings=on_cluster)
    assert (letter.type, letter.deliveries, letter.error) == (
        "alert.refresh_failing",
        2,
        "RuntimeError: always",
    )
    fixed = EventHandlers("app", {"alert.*": lambda event: None})
    assert [r.outcome for r in await fixed.replay(settings=on_cluster)] == ["handled"]
    assert await handlers.dead_letters(settings=on_cluster) == []
