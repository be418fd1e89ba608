"""Two worker processes, each with its own beat, refresh the same 2,000 due connections.

Every connection is refreshed exactly once, no rotated refresh token is presented twice
(the fake provider revokes a family and counts it when that happens), and the
per-provider concurrency limit holds across both workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support import (
    Fakes,
    save_minted,
    start_worker,
    stop_worker,
    stream_events,
    wait_until,
)
from tokenlife.adapters.keys import Keys
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings

CONNECTIONS = 2000
INTEGRATION = "generic-offline"
LIMIT = 40


@pytest.fixture
def fleet_settings(settings: Settings) -> Settings:
    """The session's configuration under a prefix of its own: nothing else is due there."""
    return settings.model_copy(
        update={"key_prefix": f"fleet-{uuid.uuid4().hex[:8]}", "provider_concurrency": LIMIT}
    )


@pytest.fixture
async def fleet_runtime(fleet_settings: Settings, fakes: Fakes) -> AsyncIterator[Runtime]:
    runtime = await Runtime.open(await load_config(fleet_settings))
    yield runtime
    await runtime.close()


@pytest.fixture
def two_workers_with_beats(fleet_settings: Settings, tmp_path: Path) -> Iterator[list[Path]]:
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    handles = [log.open("wb") for log in logs]
    processes = [
        start_worker(fleet_settings, tmp_path, handle, f"fleet-{n}", "--beat",
                     "--schedule", str(tmp_path / f"beat-{n}"))
        for n, handle in enumerate(handles, start=1)
    ]  # fmt: skip
    yield logs
    for process in processes:
        stop_worker(process)
    for handle in handles:
        handle.close()


async def seed(runtime: Runtime, fakes: Fakes, now: float) -> dict[str, str]:
    """2,000 connections whose refresh is due now; returns connection id -> family."""
    families: dict[str, str] = {}
    for n in range(CONNECTIONS):
        families[f"fleet-{n}"] = await save_minted(
            runtime, fakes.generic, INTEGRATION, f"fleet-{n}", client_id="generic-client",
            scopes=("openid", "offline_access"), lifetime=3600, issued_at=now, due_at=now,
        )  # fmt: skip
    return families


async def test_two_workers_and_two_beats_refresh_each_connection_exactly_once(
    fleet_runtime: Runtime,
    fleet_settings: Settings,
    fakes: Fakes,
    redis: Redis,
    two_workers_with_beats: list[Path],
) -> None:
    fakes.generic.most_refreshing_at_once = 0
    families = await seed(fleet_runtime, fakes, time.time())
    prefix = fleet_settings.key_prefix
    keys = Keys(prefix, fleet_settings.redis_shards)

    async def all_refreshed() -> bool:
        return all(fakes.generic.refreshes(f) >= 1 for f in families.values())

    try:
        await wait_until(all_refreshed, timeout=180, what="every connection to be refreshed")
    except AssertionError:
        done = sum(fakes.generic.refreshes(f) >= 1 for f in families.values())
        tails = [log.read_text(errors="replace")[-3000:] for log in two_workers_with_beats]
        raise AssertionError(f"{done}/{CONNECTIONS} refreshed\n" + "\n".join(tails)) from None

    async def settled() -> bool:
        # Nothing queued, nothing in flight, and every connection scheduled ahead.
        queued = await redis.llen(f"{prefix}:celery:{prefix}")
        unacked = await redis.hlen(f"{prefix}:celery:unacked")
        async with redis.pipeline(transaction=False) as pipe:
            for shard in keys.all_shards:
                pipe.zcount(keys.schedule(shard), "-inf", time.time() + 60)
            due = sum(await pipe.execute())
        return queued == 0 and unacked == 0 and due == 0

    await wait_until(settled, timeout=60, what="the fleet to settle")
    await asyncio.sleep(0)  # let the fake's last bookkeeping land in this loop's view

    counts = [fakes.generic.refreshes(f) for f in families.values()]
    assert counts.count(1) == CONNECTIONS, f"refreshed more than once: {counts.count(2)}"
    # Counted per family: a slow request of an earlier test may still land meanwhile.
    assert sum(fakes.generic.families[f].reuse_detected for f in families.values()) == 0
    assert fakes.generic.most_refreshing_at_once <= LIMIT
    entries = await stream_events(redis, prefix)
    refreshed = [data for kind, data in entries if kind == "token.refreshed"]
    assert len(refreshed) == CONNECTIONS  # one each
    assert {data["connection_id"] for data in refreshed} == set(families)
    assert {kind for kind, _ in entries} <= {"token.refreshed", "alert.configuration"}
    counters = await redis.hgetall(keys.counters)
    assert counters["refresh:custom:refreshed"] == str(CONNECTIONS)
