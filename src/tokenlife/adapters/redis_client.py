"""The Redis client of every tokenlife process (API, worker tasks, CLI, library)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def open_redis(
    url: str,
    *,
    max_connections: int,
    wait_seconds: float,
    health_check_seconds: float,
    retries: int,
) -> Redis:
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
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis.from_pool(pool)
