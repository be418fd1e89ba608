"""The Redis client of every tokenlife process (API, worker tasks, CLI, library): one Redis,
a Redis Cluster or a Sentinel-managed master, as `TOKENLIFE_REDIS_URL` says
(core/redis_topology.py)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, TypeAlias, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
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
    A Redis Cluster client has not the backoff (see `_cluster`), and waits for a connection
    per process rather than per node (`_WaitingCluster`).
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
    """`open_client`, typed as a `Redis` for every caller. A RedisCluster answers the commands
    tokenlife sends with the same signatures, because every script's keys share a slot
    (adapters/keys.py); where a cluster differs, the code asks `is_cluster`: a blocking read of
    several shards' streams (adapters/event_consumer.py). Scripts inside a pipeline are sent
    as plain EVALSHA on either (adapters/scripts.py)."""
    client = open_client(url, max_connections=max_connections, wait_seconds=wait_seconds,
                         health_check_seconds=health_check_seconds, retries=retries)  # fmt: skip
    return cast(Redis, client)


def connect(url: str, **options: Any) -> Redis:
    """A plain client for a one-off command line or a long blocking read (the doctor, the
    preflight, an app's event reader): redis-py's own defaults and `options` (socket
    timeouts, retry) for one server, each node of a Cluster, or a Sentinel's master; typed
    as `open_redis` is."""
    target = parse_redis_url(url)
    if target.topology is Topology.STANDALONE:
        return Redis.from_url(url, decode_responses=True, **options)
    node_options = {**_node_options(target), **options}
    if target.topology is Topology.CLUSTER:
        cluster = RedisCluster(
            startup_nodes=_startup_nodes(target), decode_responses=True, **node_options
        )
        return cast(Redis, cluster)
    master = _sentinel(target, node_options).master_for(
        target.service,
        connection_pool_class=_ClosingSentinelPool,
        decode_responses=True,
        **node_options,
    )
    return cast(Redis, master)


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


def _cluster(
    target: RedisTarget, max_connections: int, health_check_seconds: float, retry: Retry
) -> RedisCluster:
    """`max_connections` per node. redis-py's cluster node pool doesn't wait
    (`ClusterNode.acquire_connection` raises MaxConnectionsError), so the client does.

    The cluster client takes only the number of attempts from `retry`: after a
    ConnectionError or TimeoutError it reloads the slot map and sends again without a
    pause; after CLUSTERDOWN it waits 250 ms (`RedisCluster.execute_command`, redis-py 8.1).
    Its node connections never retry themselves, so the topology is re-read first.
    """
    return _WaitingCluster(
        startup_nodes=_startup_nodes(target),
        max_connections=max_connections,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=retry,
        **_node_options(target),
    )


# Set while a task holds a permit of _WaitingCluster's gate.
_GATED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tokenlife_redis_gated", default=False
)


class _WaitingCluster(RedisCluster):
    """A cluster client whose commands wait for a connection, as a BlockingConnectionPool's
    do, instead of failing with MaxConnectionsError when a node's `max_connections` are all
    in use (a batch of concurrent refreshes would): at most that many commands or pipelines
    are in flight per process, each holding at most one connection per node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._permits = int(kwargs["max_connections"])
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _gate(self) -> asyncio.Semaphore:
        # One per event loop: a semaphore belongs to the loop it first waits on.
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self._permits)
        return gate

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if _GATED.get():
            # A pipeline holding a permit resends a MOVED or ASK reply through here: not
            # again, or pipelines that all hit a redirection would wait on each other.
            return await super().execute_command(*args, **kwargs)
        async with self._gate():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def gated(raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
            async with self._gate():
                token = _GATED.set(True)
                try:
                    return await execute(raise_on_error, allow_redirections)
                finally:
                    _GATED.reset(token)

        pipe.execute = gated  # type: ignore[method-assign]
        return pipe


class _ClosingSentinelPool(SentinelConnectionPool):
    """Closing the client closes the Sentinel clients too: nothing else holds them."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _BlockingSentinelPool(_ClosingSentinelPool, BlockingConnectionPool):
    """SentinelConnectionPool is a plain ConnectionPool (it raises when all connections are
    in use); with BlockingConnectionPool after it in the MRO its `get_connection` waits
    for one instead, and the Sentinel part still finds the master for each connection."""


def _sentinel_master(
    target: RedisTarget,
    max_connections: int,
    wait_seconds: float,
    health_check_seconds: float,
    retry: Retry,
) -> Redis:
    options = _node_options(target)
    master = _sentinel(target, options).master_for(
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


def _sentinel(target: RedisTarget, options: dict[str, Any]) -> Sentinel:
    """The Sentinels of `target`. A Sentinel client takes only the socket options of the
    master's by default (`Sentinel.__init__`): no password, no TLS. Ours get TLS as the
    master does, and the Sentinel's own password if the URL has one."""
    sentinel_options = {k: v for k, v in options.items() if k.startswith(("ssl", "socket_"))}
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
    # redis-py's Sentinel.__init__ has no annotations.
    return Sentinel(list(target.hosts), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]


def _startup_nodes(target: RedisTarget) -> list[ClusterNode]:
    return [ClusterNode(host, port) for host, port in target.hosts]


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
