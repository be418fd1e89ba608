"""tokenlife with its data on a real three-master Redis Cluster (the broker on the session's
plain Redis, as docs/configuration.md says it must be): an exchange through a worker, a
refresh storm of two workers with their beats, the HTTP API, and alert delivery.

Every Lua script that runs here would be refused by the cluster if its keys were in
different slots, so these tests also prove the key layout (adapters/keys.py)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tests.cluster_process import ClusterProcess
from tests.support import (
    Fakes,
    WorkerHandle,
    client_app,
    connect,
    save_minted,
    serving_api,
    start_worker,
    stop_worker,
    stream_entries,
    wait_for,
    wait_until,
)
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import open_client
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings

pytestmark = pytest.mark.cluster

INTEGRATION = "generic-offline"
STORM = 300
LIMIT = 20
API_KEY = "cluster-test-api-key-0123456789"


@pytest.fixture
def on_cluster(settings: Settings, redis_cluster: ClusterProcess) -> Settings:
    """The session's configuration with its data on the cluster, under a prefix of its own,
    and Celery's queues on the session's plain Redis."""
    return settings.model_copy(update={
        "redis_url": redis_cluster.url,
        "broker_url": settings.redis_url,
        "key_prefix": f"cluster-{uuid.uuid4().hex[:8]}",
        "provider_concurrency": LIMIT,
    })  # fmt: skip


@pytest.fixture
async def cluster(on_cluster: Settings) -> AsyncIterator[Redis]:
    client = open_client(on_cluster.redis_url, max_connections=32, wait_seconds=5,
                         health_check_seconds=10, retries=3)  # fmt: skip
    assert isinstance(client, RedisCluster)
    yield cast(Redis, client)
    await client.aclose()


def _workers(settings: Settings, directory: Path, count: int, *extra: str) -> Iterator[list[Path]]:
    logs = [directory / f"worker-{n}.log" for n in range(count)]
    handles = [log.open("wb") for log in logs]
    processes = [
        start_worker(settings, directory, handle, f"cluster-{n}-{settings.key_prefix}",
                     *[a.replace("{n}", str(n)) for a in extra])
        for n, handle in enumerate(handles)
    ]  # fmt: skip
    app = client_app(settings)
    try:

        def up() -> bool:
            exited = any(p.poll() is not None for p in processes)
            return exited or len(app.control.ping(timeout=0.5)) >= count

        wait_for(up, timeout=60, what="the workers to answer")
        for process, log in zip(processes, logs, strict=True):
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        yield logs
    finally:
        for process in processes:
            stop_worker(process)
        for handle in handles:
            handle.close()
        app.close()


@pytest.fixture
def one_worker(on_cluster: Settings, tmp_path: Path) -> Iterator[WorkerHandle]:
    gen = _workers(on_cluster, tmp_path, 1)
    logs = next(gen)
    app = client_app(on_cluster)
    try:
        yield WorkerHandle(app=app, process=cast(Any, None), log_path=logs[0])
    finally:
        app.close()
        next(gen, None)


async def _events(cluster: Redis, settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    keys = Keys(settings.key_prefix, settings.redis_shards)
    return [(f["type"], json.loads(f["data"])) for _, f in await stream_entries(cluster, keys)]


async def test_an_exchange_a_token_and_the_api_on_the_cluster(
    on_cluster: Settings, cluster: Redis, fakes: Fakes, one_worker: WorkerHandle, tmp_path: Path
) -> None:
    async with Tokenlife.from_environment(on_cluster) as tl:
        cid = f"user-{uuid.uuid4().hex[:8]}"
        summary = await connect(tl, one_worker, INTEGRATION, cid)
        assert summary["outcome"] == "refreshable", summary
        token = await tl.get_access_token(INTEGRATION, cid)
        assert token.access_token in fakes.generic.issued_secrets
        assert token.expires_at is not None and token.expires_at > time.time() + 3000
        keys = Keys(on_cluster.key_prefix, on_cluster.redis_shards)
        # The record is on the node that owns its shard's slot, beside its schedule entry.
        assert await cluster.hget(keys.connection(INTEGRATION, cid), "status") == "active"
        assert await cluster.zscore(keys.schedule_of(INTEGRATION, cid), f"{INTEGRATION}:{cid}")
        types = [t for t, d in await _events(cluster, on_cluster) if d.get("connection_id") == cid]
        assert types == ["connection.authorized"]

        with serving_api(on_cluster, tmp_path, API_KEY) as (base, log):

            def get(path: str, method: str = "GET") -> tuple[int, str]:
                bearer = {"Authorization": f"Bearer {API_KEY}"}
                request = urllib.request.Request(base + path, headers=bearer, method=method)
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.status, r.read().decode()

            status, body = await asyncio.to_thread(get, "/api/connections")
            assert status == 200 and cid in body, log.read_text()
            path = f"/api/connections/{INTEGRATION}/{cid}/token"
            status, body = await asyncio.to_thread(get, path, "POST")
            assert status == 200 and json.loads(body)["access_token"] == token.access_token
            status, metrics = await asyncio.to_thread(get, "/metrics")
            assert status == 200
            # Counted by the scripts in each shard: the one connection, active.
            assert 'tokenlife_connections{status="active"} 1.0' in metrics, metrics


async def test_two_workers_with_beats_refresh_a_storm_exactly_once_on_the_cluster(
    on_cluster: Settings, cluster: Redis, fakes: Fakes, tmp_path: Path
) -> None:
    runtime = await Runtime.open(await load_config(on_cluster))
    try:
        now = time.time()
        families = {}
        for n in range(STORM):
            families[f"storm-{n}"] = await save_minted(
                runtime, fakes.generic, INTEGRATION, f"storm-{n}", client_id="generic-client",
                scopes=("openid", "offline_access"), lifetime=3600, issued_at=now, due_at=now,
            )  # fmt: skip
    finally:
        await runtime.close()
    keys = Keys(on_cluster.key_prefix, on_cluster.redis_shards)
    used = {keys.shard(INTEGRATION, cid) for cid in families}
    assert len(used) == on_cluster.redis_shards  # the storm touches every shard

    workers = _workers(on_cluster, tmp_path, 2, "--beat", "--schedule", str(tmp_path / "beat-{n}"))
    logs = next(workers)
    try:

        async def all_refreshed() -> bool:
            return all(fakes.generic.refreshes(f) >= 1 for f in families.values())

        try:
            await wait_until(all_refreshed, timeout=70, what="every connection to be refreshed")
        except AssertionError:
            done = sum(fakes.generic.refreshes(f) >= 1 for f in families.values())
            tails = [log.read_text(errors="replace")[-3000:] for log in logs]
            raise AssertionError(f"{done}/{STORM} refreshed\n" + "\n".join(tails)) from None

        async def settled() -> bool:
            due = 0
            for shard in keys.all_shards:
                due += await cluster.zcount(keys.schedule(shard), "-inf", time.time() + 60)
            return due == 0

        await wait_until(settled, timeout=30, what="every connection scheduled ahead")
    finally:
        next(workers, None)
    counts = [fakes.generic.refreshes(f) for f in families.values()]
    assert counts.count(1) == STORM, f"refreshed more than once: {STORM - counts.count(1)}"
    assert all(fakes.generic.families[f].reuse_detected == 0 for f in families.values())
    refreshed = [d for t, d in await _events(cluster, on_cluster) if t == "token.refreshed"]
    assert len(refreshed) == STORM


async def test_an_alert_is_delivered_from_the_cluster(
    on_cluster: Settings, cluster: Redis, fakes: Fakes
) -> None:
    tag = uuid.uuid4().hex[:8]
    hook = f"/{tag}/hook"
    configured = on_cluster.model_copy(update={
        "alert_webhook_urls": (fakes.receiver.base_url + hook,),
    })  # fmt: skip
    runtime = await Runtime.open(await load_config(configured))
    try:
        delivery = runtime.alert_delivery()
        await delivery.run_once(time.time())  # the groups, from here on
        # Two connections in different shards, each with an alert in its shard's stream.
        for cid in ("alerted-a", "alerted-b", "alerted-c"):
            await runtime.events.emit(
                "alert.refresh_failing", INTEGRATION, cid, time.time(), provider="custom",
                message="the provider refuses the refresh", failed_attempts=3,
            )  # fmt: skip
        keys = Keys(configured.key_prefix, configured.redis_shards)
        assert (
            len({keys.shard(INTEGRATION, c) for c in ("alerted-a", "alerted-b", "alerted-c")}) > 1
        )
        totals = await delivery.run_once(time.time())
        assert totals["read"] == 3, totals
        bodies = " ".join(r.body.decode() for r in fakes.receiver.at(hook))
        assert all(c in bodies for c in ("alerted-a", "alerted-b", "alerted-c")), bodies
        again = await delivery.run_once(time.time())
        assert again.get("read", 0) == 0  # acknowledged on every shard
    finally:
        await runtime.close()
