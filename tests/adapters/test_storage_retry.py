"""The one retry loop for writes a Redis outage must not lose (exchange and refresh saves):
its tries stay close together however long Redis is away, so a save lands within half a
second of Redis coming back, before a beat can hand the connection to another worker."""

from __future__ import annotations

import itertools
import random
import time
import uuid

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.conftest import _dead_port
from tokenlife.adapters.storage_errors import retry_while_unavailable
from tokenlife.services.durable_write import WriteRetry
from tokenlife.settings import Settings

OUTAGE_SECONDS = 2.5


async def test_tries_stay_at_most_half_a_second_apart_through_an_outage(
    redis: Redis, settings: Settings
) -> None:
    # No retries inside redis-py: each try is one refused connection.
    dead = Redis(host="127.0.0.1", port=_dead_port(), retry=Retry(NoBackoff(), 0))
    key = f"{settings.key_prefix}:retry-{uuid.uuid4().hex[:8]}"
    tries: list[float] = []
    back_at = time.monotonic() + OUTAGE_SECONDS

    async def write() -> int:
        tries.append(time.monotonic())
        client = redis if tries[-1] >= back_at else dead  # Redis returns after the outage
        return int(await client.incr(key))

    policy = WriteRetry()  # what a refresh's save uses
    try:
        written = await retry_while_unavailable(
            write, 30, what="a test write", base_seconds=policy.base_seconds,
            max_delay_seconds=policy.max_delay_seconds, rng=random.Random(7),
        )  # fmt: skip
    finally:
        await dead.aclose()

    assert written == 1  # landed once
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert max(gaps) <= 0.6, gaps
    assert tries[-1] - back_at <= 0.6  # landed promptly after Redis came back


async def test_a_write_that_is_not_an_outage_is_not_retried(redis: Redis) -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await retry_while_unavailable(broken, 30)
    assert calls == 1
