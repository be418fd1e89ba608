"""Writes that a Redis hiccup must not lose: retried with capped backoff for a bounded time.

Used for every write that ends a refresh, above all the one that stores a rotated refresh
token: once the provider has answered, the token it sent is the only one that works (at a
provider that rotates strictly), and it lives in this process's memory until it is saved.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis import exceptions as redis_errors

from tokenlife.core.backoff import compute_backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

# Redis is away or not ready (restarting, loading its AOF, a failover, the pool empty):
# worth waiting for. Anything else (a script error) is a bug, not a reason to wait.
RETRYABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError and an exhausted pool
    redis_errors.TimeoutError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class WriteRetry:
    """How long to keep trying a write, and how far apart."""

    seconds: float = 600.0
    base_seconds: float = 0.1
    # Short, so a write lands within seconds of Redis coming back.
    max_delay_seconds: float = 5.0


async def write_until_saved(
    write: Callable[[], Awaitable[T]],
    policy: WriteRetry,
    *,
    what: str,
    monotonic: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """`write()`, again and again while Redis is unavailable, for `policy.seconds` at
    most; then the last error is raised. `write` must be safe to repeat (a compare-and-set
    that recognises its own earlier attempt)."""
    rng = rng or random.Random()
    until = monotonic() + policy.seconds
    attempt = 0
    while True:
        try:
            return await write()
        except RETRYABLE as exc:
            left = until - monotonic()
            if left <= 0:
                raise
            delay = compute_backoff(
                attempt, base=policy.base_seconds, cap=policy.max_delay_seconds,
                jitter=rng.random(),
            )  # fmt: skip
            if attempt == 0 or attempt % 10 == 0:
                log.warning("%s: Redis unavailable (%s); retrying for up to %.0f s more",
                            what, type(exc).__name__, left)  # fmt: skip
            await asyncio.sleep(min(delay, left))
            attempt += 1
