"""Redis being unreachable, as tokenlife's own error: a caller retries StorageUnavailableError
like any transient error, without importing redis-py's exception classes.

And the one retry loop for writes that a Redis outage must not lose (an exchange's save,
every write that ends a refresh, above all the one that stores a rotated refresh token:
once the provider has answered, that token lives in this process's memory until saved).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokenlife.core.backoff import compute_backoff
from tokenlife.errors import StorageUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

# ConnectionError covers refused and reset connections, an exhausted pool and a server
# still loading its data (BusyLoadingError); ReadOnlyError a replica after a failover.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
# Worth waiting for as well: a cluster slot moving, a socket error redis-py let through.
# Anything else (a script error) is a bug, not a reason to wait.
_RETRYABLE = (*UNAVAILABLE, TryAgainError, OSError, StorageUnavailableError)

# The longest gap between two tries. Short: trying a dead Redis costs a refused
# connection, and when Redis returns the saver must land before anyone else can claim the
# connection (a claim becomes possible within a beat, 1 s, once the lock has expired).
SAVE_RETRY_GAP_SECONDS = 0.5


@asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    try:
        yield
    except UNAVAILABLE as exc:
        raise StorageUnavailableError(f"Redis unavailable: {type(exc).__name__}: {exc}") from None


async def retry_while_unavailable(
    write: Callable[[], Awaitable[T]],
    seconds: float,
    *,
    what: str = "a write to Redis",
    base_seconds: float = 0.05,
    max_delay_seconds: float = SAVE_RETRY_GAP_SECONDS,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Run `write`, again and again while Redis is unavailable (raw redis-py errors or
    StorageUnavailableError), with jittered backoff from `base_seconds` up to
    `max_delay_seconds`, for `seconds` at most; then raise the last error.

    For a write whose input exists only in memory (tokens a provider just issued). The
    write must be all-or-nothing and safe to repeat: one Lua script, whose effect a retry
    after a lost reply recognises.
    """
    rng = rng or random.Random()
    until = monotonic() + seconds
    attempt = 0
    while True:
        try:
            return await write()
        except _RETRYABLE as exc:
            left = until - monotonic()
            if left <= 0:
                raise
            if attempt % 10 == 0:
                log.warning("%s failed: Redis unavailable (%s); retrying for up to %.0f s more",
                            what, type(exc).__name__, left)  # fmt: skip
            delay = compute_backoff(
                attempt, base=base_seconds, cap=max(base_seconds, max_delay_seconds),
                jitter=rng.random(),
            )  # fmt: skip
            await asyncio.sleep(min(delay, left))
            attempt += 1
