"""The Redis client of every tokenlife process (API, worker tasks, CLI, library): one Redis,
a Redis Cluster or a Sentinel-managed master, as `TOKENLIFE_REDIS_URL` says
(core/redis_topology.py)."""

from __future__ import annotations

from typing import Any, TypeAlias, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokenlife.core.redis_topology import RedisTarget, Topology, parse_redis_url

RedisClient: TypeAlias = Redis | RedisCluster
_RETRY_ON = [RedisConnectionError, RedisTimeoutError]


def open_client(
    url: str,
    *,
    max_connections: int,
    wait_seconds: float,
    health_check_seconds: float,
    retries: int,
) -> RedisClient:
    """A client that survives a Redis restart without failing the first command.

    A pooled connection idle past `health_check_seconds` is PINGed before use, and a
    command that still meets a dead socket (ConnectionError, TimeoutError) is retried on a
    new connection with exponential backoff, 50 ms doubling to 2 s (redis-py `Retry`; see
    "Retries" in the redis-py docs). A command whose reply was lost may run twice: the
    writes that matter are compare-and-set or token-owned (docs/configuration.md). The
    socket timeout stays redis-py 8's default (5 s), so a Redis that stops answering fails
    a command instead of hanging it.

    A blocking pool: a batch of concurrent refreshes waits up to `wait_seconds` for a free
    connection instead of failing with "Too many connections" (the default pool raises).
    A Redis Cluster client has neither the backoff nor a blocking pool: see `_cluster`.
    """
    target = parse_redis_url(url)
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    if target.topology is Topology.CLUSTER:
        return _cluster(target, max_connections, health_check_seconds, retry)
    if target.topology is Topology.SENTINEL:
        return _sentinel_master(target, max_connections, wait_seconds, health_check_seconds,
                                retry)  # fmt: skip
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=retry,
        retry_on_error=_RETRY_ON,
    )
    return Redis.from_pool(pool)


def open_redis(
    url: str,
    *,
    max_connections: int,
    wait_seconds: float,
    health_check_seconds: float,
    retries: int,
) -> Redis:
    """`open_client` for the callers typed against a single Redis (one server or a
    Sentinel's master). A Redis Cluster URL is refused here rather than handed over as a
    `Redis`: a cluster client lacks what they may use (a script inside a pipeline, keys of
    several slots in one command), and only the `RedisClient` type lets mypy show where."""
    if parse_redis_url(url).topology is Topology.CLUSTER:
        raise ValueError(
            "TOKENLIFE_REDIS_URL names a Redis Cluster, which this part of tokenlife does not "
            "support yet (issue 12)"
        )
    client = open_client(url, max_connections=max_connections, wait_seconds=wait_seconds,
                         health_check_seconds=health_check_seconds, retries=retries)  # fmt: skip
    assert isinstance(client, Redis)
    return client


def _cluster(
    target: RedisTarget, max_connections: int, health_check_seconds: float, retry: Retry
) -> RedisCluster:
    """`max_connections` per node. Past it a command fails at once with MaxConnectionsError:
    redis-py's cluster node pool doesn't wait (`ClusterNode.acquire_connection`).

    The cluster client takes only the number of attempts from `retry`: after a
    ConnectionError or TimeoutError it reloads the slot map and sends again without a
    pause; after CLUSTERDOWN it waits 250 ms (`RedisCluster.execute_command`, redis-py 8.1).
    Its node connections never retry themselves, so the topology is re-read first.
    """
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        max_connections=max_connections,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=retry,
        **_node_options(target),
    )


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """SentinelConnectionPool is a plain ConnectionPool (it raises when all connections are
    in use); with BlockingConnectionPool after it in the MRO its `get_connection` waits
    for one instead, and the Sentinel part still finds the master for each connection.
    Closing the client closes the Sentinel clients too: nothing else holds them."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


def _sentinel_master(
    target: RedisTarget,
    max_connections: int,
    wait_seconds: float,
    health_check_seconds: float,
    retry: Retry,
) -> Redis:
    options = _node_options(target)
    # A Sentinel client takes only the socket options of the master's by default
    # (`Sentinel.__init__`): no password, no TLS. Ours get TLS as the master does, and the
    # Sentinel's own password if the URL has one.
    sentinel_options = {k: v for k, v in options.items() if k.startswith(("ssl", "socket_"))}
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
    # redis-py's Sentinel.__init__ has no annotations.
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    master = sentinel.master_for(
        target.service,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=retry,
        retry_on_error=_RETRY_ON,
        **options,
    )
    return cast(Redis, master)


def _node_options(target: RedisTarget) -> dict[str, Any]:
    """The user, password, database and redis-py URL options, for every node."""
    options: dict[str, Any] = dict(parse_url(target.node_url))
    for name in ("host", "port"):
        options.pop(name, None)
    if target.topology is Topology.CLUSTER:
        options.pop("db", None)
    # parse_url says TLS with a connection class; the cluster and Sentinel pools pick their
    # own class from `ssl`.
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options
