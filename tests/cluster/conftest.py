"""A Redis Cluster and a Sentinel of the test run's own (tests/cluster_process.py), started
once per session (per xdist worker) on free ports, and clients opened as tokenlife opens them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster

from tests.cluster_process import ClusterProcess, SentinelProcess
from tokenlife.adapters.redis_client import open_client


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    cluster = ClusterProcess(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelProcess]:
    sentinel = SentinelProcess(tmp_path_factory.mktemp("sentinel"))
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()


@pytest.fixture
async def cluster_client(redis_cluster: ClusterProcess) -> AsyncIterator[RedisCluster]:
    """The cluster as tokenlife opens it, emptied first: a test sees its own keys and
    scripts only."""
    client = open_client(redis_cluster.url, max_connections=8, wait_seconds=5,
                         health_check_seconds=10, retries=3)  # fmt: skip
    assert isinstance(client, RedisCluster)
    await client.execute_command("FLUSHALL", target_nodes=RedisCluster.PRIMARIES)
    await client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()
