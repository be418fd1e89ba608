"""Redis being unreachable, as tokenlife's own error: a caller retries StorageUnavailableError
like any transient error, without importing redis-py's exception classes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokenlife.errors import StorageUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

# ConnectionError covers refused and reset connections, an exhausted pool and a server
# still loading its data (BusyLoadingError); ReadOnlyError a replica after a failover.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


@asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    try:
        yield
    except UNAVAILABLE as exc:
        raise StorageUnavailableError(f"Redis unavailable: {type(exc).__name__}: {exc}") from None


async def retry_while_unavailable(write: Callable[[], Awaitable[T]], seconds: float) -> T:
    """Run `write`, retrying with backoff (50 ms doubling to 2 s) while it raises
    StorageUnavailableError, for `seconds` at most; then raise the last error.

    For a write whose input exists only in memory (tokens a provider just issued). The
    write must be all-or-nothing and idempotent: one Lua script, whose effect a retry
    after a lost reply recognises.
    """
    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        try:
            return await write()
        except StorageUnavailableError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("a write to Redis failed (%s); retrying in %.2f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
