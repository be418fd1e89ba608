"""What tokenlife's Redis access needs from a Redis Cluster and from Sentinel, tried on real
ones (tests/cluster_process.py), with the client open_client builds. Where redis-py's
cluster client differs from redis.asyncio.Redis (scripts in a pipeline, keys of several
slots, an exhausted pool), the test pins down what it does instead."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.exceptions import ResponseError as RedisResponseError

from tests.cluster_process import ClusterProcess, SentinelProcess
from tokenlife.adapters import scripts
from tokenlife.adapters.redis_client import open_client, open_redis
from tokenlife.adapters.scripts import Script

pytestmark = pytest.mark.cluster

INCR_BOTH = "return redis.call('INCR', KEYS[1]) + redis.call('INCR', KEYS[2])"
# Busy for `ARGV[1]` microseconds by the server's clock, then INCR KEYS[1]: a script that
# shows whether a pipeline's nodes work at the same time.
SPIN = """local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1])
return redis.call('INCR', KEYS[1])"""


async def _tags_on_distinct_nodes(client: RedisCluster, count: int) -> list[str]:
    """`count` hash tags whose slots belong to `count` different masters."""
    await client.initialize()
    found: dict[str, str] = {}
    # Keys that share a hash tag land in one slot: {t1}a and {t1}b.
    for tag in (f"{{t{n}}}" for n in itertools.count(1)):
        found.setdefault(_node(client, tag).name, tag)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("unreachable")


def _node(client: RedisCluster, key: str) -> ClusterNode:
    node = client.get_node_from_key(key)
    assert node is not None
    return node


async def test_set_and_get_reach_every_master(cluster_client: RedisCluster) -> None:
    keys = [f"k{i}" for i in range(30)]
    for key in keys:
        await cluster_client.set(key, key.upper())
    assert [await cluster_client.get(key) for key in keys] == [k.upper() for k in keys]
    assert {_node(cluster_client, key).name for key in keys} == {
        node.name for node in cluster_client.get_primaries()
    }


async def test_a_registered_script_runs_on_the_node_of_its_hash_tag(
    cluster_client: RedisCluster,
) -> None:
    """AsyncScript.__call__ works on the cluster client: EVALSHA goes to the keys' slot,
    and NOSCRIPT there (the conftest flushed every script) loads it and retries."""
    first, other = await _tags_on_distinct_nodes(cluster_client, 2)
    script = cluster_client.register_script(INCR_BOTH)
    assert await script(keys=[f"{first}a", f"{first}b"]) == 2
    assert await script(keys=[f"{other}a", f"{other}b"]) == 2
    assert await script(keys=[f"{first}a", f"{first}b"]) == 4


async def test_keys_of_several_slots_are_refused_before_anything_is_sent(
    cluster_client: RedisCluster,
) -> None:
    first, other = await _tags_on_distinct_nodes(cluster_client, 2)
    script = cluster_client.register_script(INCR_BOTH)
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
        await script(keys=[f"{first}a", f"{other}a"])
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
        await cluster_client.mget(f"{first}a", f"{other}a")
    assert await cluster_client.exists(f"{first}a", f"{other}a") == 0  # nothing ran


async def test_a_script_that_reaches_a_key_it_did_not_declare_fails_on_the_server(
    cluster_client: RedisCluster,
) -> None:
    """redis-py routes by KEYS only; a key in ARGV on another master is Redis's error."""
    first, other = await _tags_on_distinct_nodes(cluster_client, 2)
    read = cluster_client.register_script("return redis.call('GET', ARGV[1])")
    await cluster_client.set(f"{other}x", "there")
    with pytest.raises(RedisResponseError, match="non local key"):
        await read(keys=[f"{first}a"], args=[f"{other}x"])


async def test_a_pipeline_spans_nodes_but_refuses_a_registered_script(
    cluster_client: RedisCluster,
) -> None:
    """ClusterPipeline blocks its `evalsha` method (redis-py's PIPELINE_BLOCKED_COMMANDS),
    so `await script(keys=..., client=pipe)` raises at once."""
    first, other, third = await _tags_on_distinct_nodes(cluster_client, 3)
    script = cluster_client.register_script(INCR_BOTH)
    async with cluster_client.pipeline(transaction=False) as pipe:
        with pytest.raises(RedisClusterException, match="evalsha is blocked"):
            await script(keys=[f"{first}a", f"{first}b"], client=pipe)  # type: ignore[arg-type]
        pipe.set(f"{first}s", "1")
        pipe.set(f"{other}s", "2")
        pipe.get(f"{third}s")
        assert await pipe.execute() == [True, True, None]


async def test_scripts_queued_on_a_pipeline_run_once_each_on_masters_without_them(
    cluster_client: RedisCluster,
) -> None:
    """What adapters/scripts.py relies on: a raw EVALSHA that the pipeline routes by its
    keys; with raise_on_error=False a master without the script answers NOSCRIPT in place
    and the other replies stand; `scripts.execute` then runs each such script alone, which
    loads it. The conftest flushed every master's scripts."""
    tags = await _tags_on_distinct_nodes(cluster_client, 3)
    script = Script(cast(Redis, cluster_client), INCR_BOTH)
    async with cluster_client.pipeline(transaction=False) as pipe:
        for tag in tags:
            await script(keys=[f"{tag}a", f"{tag}b"], client=pipe)
        pipe.set(f"{tags[0]}s", "1")
        assert await scripts.execute(pipe) == [2, 2, 2, True]
    # Each ran once: every key was incremented once.
    for tag in tags:
        assert await cluster_client.get(f"{tag}a") == "1"
    assert await cluster_client.script_exists(script._inner.sha) == [True]  # on every master
    async with cluster_client.pipeline(transaction=False) as pipe:
        for tag in tags:
            await script(keys=[f"{tag}a", f"{tag}b"], client=pipe)
        assert await scripts.execute(pipe) == [4, 4, 4]


async def test_a_script_refuses_a_transaction_pipeline(cluster_client: RedisCluster) -> None:
    script = Script(cast(Redis, cluster_client), INCR_BOTH)
    tag = (await _tags_on_distinct_nodes(cluster_client, 1))[0]
    async with cluster_client.pipeline(transaction=True) as pipe:
        with pytest.raises(TypeError, match="transaction=False"):
            await script(keys=[f"{tag}a", f"{tag}b"], client=pipe)


async def test_a_pipeline_sends_to_its_nodes_at_once(cluster_client: RedisCluster) -> None:
    """One batch per node, sent concurrently (asyncio.gather over the nodes in
    PipelineStrategy._execute): three 300 ms scripts on three masters take about 300 ms."""
    tags = await _tags_on_distinct_nodes(cluster_client, 3)
    sha = await cluster_client.script_load(SPIN)
    async with cluster_client.pipeline(transaction=False) as pipe:
        for tag in tags:
            pipe.execute_command("EVALSHA", sha, 1, f"{tag}n", 300_000)
        started = time.monotonic()
        assert await pipe.execute() == [1, 1, 1]
    assert time.monotonic() - started < 0.75


async def test_a_consumer_group_reads_a_tagged_stream(cluster_client: RedisCluster) -> None:
    stream = "{events}:stream"
    await cluster_client.xgroup_create(stream, "delivery", id="0", mkstream=True)
    entry = await cluster_client.xadd(stream, {"type": "token.refreshed"})
    read = await cluster_client.xreadgroup("delivery", "worker-1", {stream: ">"}, count=10)
    assert read == [[stream, [(entry, {"type": "token.refreshed"})]]]
    assert await cluster_client.xack(stream, "delivery", entry) == 1


async def test_scan_iter_walks_every_master(cluster_client: RedisCluster) -> None:
    """`scan_iter` SCANs every primary to its end, one cursor per node; MATCH applies on
    each node. COUNT is per node and per call, as on one server."""
    keys = {f"conn:{i}" for i in range(40)}
    for key in keys:
        await cluster_client.set(key, "1")
    await cluster_client.set("other:1", "1")
    seen = [key async for key in cluster_client.scan_iter(match="conn:*", count=5)]
    assert sorted(seen) == sorted(keys)
    assert {_node(cluster_client, key).name for key in seen} == {
        node.name for node in cluster_client.get_primaries()
    }


async def test_a_command_waits_for_a_connection_instead_of_failing(
    redis_cluster: ClusterProcess,
) -> None:
    """A cluster node's pool doesn't wait (past max_connections redis-py raises
    MaxConnectionsError at once), so the client does, per process: with one permit, a
    command waits for the blocking one before it, and then succeeds."""
    client = open_client(redis_cluster.url, max_connections=1, wait_seconds=5,
                         health_check_seconds=10, retries=3)  # fmt: skip
    assert isinstance(client, RedisCluster)
    try:
        first, other = await _tags_on_distinct_nodes(client, 2)
        waiting = asyncio.ensure_future(client.blpop([f"{first}queue"], timeout=1))
        await asyncio.sleep(0)  # the BLPOP takes the permit
        assert await client.get(f"{other}x") is None
        assert waiting.done() and waiting.result() is None
    finally:
        await client.aclose()


async def test_open_redis_gives_a_cluster_client_typed_as_redis(
    redis_cluster: ClusterProcess,
) -> None:
    client = open_redis(redis_cluster.url, max_connections=4, wait_seconds=1,
                        health_check_seconds=10, retries=0)  # fmt: skip
    try:
        assert isinstance(client, RedisCluster)
        assert await client.set("{t}x", "1") and await client.get("{t}x") == "1"
    finally:
        await client.aclose()


async def test_sentinel_gives_the_master_with_a_waiting_pool(
    redis_sentinel: SentinelProcess,
) -> None:
    """The master found through Sentinel answers in str (decode_responses reaches the
    master's pool), and with max_connections=1 a second command waits for the first."""
    client = open_redis(redis_sentinel.url, max_connections=1, wait_seconds=5,
                        health_check_seconds=10, retries=3)  # fmt: skip
    assert isinstance(client, Redis)
    try:
        assert await client.set("sentinel:k", "v")
        script = client.register_script("return redis.call('GET', KEYS[1])")
        assert await script(keys=["sentinel:k"]) == "v"
        waiting = asyncio.ensure_future(client.blpop(["sentinel:queue"], timeout=0.3))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await client.get("sentinel:k") == "v"
        assert time.monotonic() - started > 0.1  # it waited for the BLPOP's connection
        assert await waiting is None
        host = await client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        assert host == ("127.0.0.1", redis_sentinel.master_port)
    finally:
        await client.aclose()
