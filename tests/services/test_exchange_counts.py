"""Each end of an exchange is counted once in the counters hash, by the run that ended it:
stored, refused over a bound account, outcome unknown; a run delivered again adds
nothing. The service over the real Runtime and Redis, counting under keys of its own."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.outcome_counters import Counters, parse_outcome_counters
from tokenlife.runtime import Runtime
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange import ExchangeService
from tokenlife.settings import Settings


@pytest.fixture
def counted(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-counts-{uuid.uuid4().hex[:8]}")


def counting_service(runtime: Runtime, counted: Keys) -> ExchangeService:
    return exchange_service(runtime, counters=Counters(runtime.redis, counted))


async def exchanges(redis: Redis, keys: Keys) -> dict[tuple[str, str, str], int]:
    raw = cast(dict[str, str], await redis.hgetall(keys.counters))
    return parse_outcome_counters(raw)[0]


async def run(
    service: ExchangeService, callback: dict[str, str], task: ExchangeAttempt
) -> dict[str, Any]:
    return await service.exchange_code(
        state=callback["state"], code=callback["code"], error=None, error_description=None,
        attempt=task, now=time.time(),
    )  # fmt: skip


async def test_a_stored_connection_and_a_refused_reconnect_are_counted_once_each(
    runtime: Runtime, counted: Keys, redis: Redis
) -> None:
    service, cid = counting_service(runtime, counted), new_id()
    stored = await consent(service, "google", cid, time.time(), login_hint="alice")
    first = attempt()
    assert (await run(service, stored, first))["outcome"] == "refreshable"
    other = await consent(service, "google", cid, time.time(), login_hint="mallory")
    refused = attempt()
    assert (await run(service, other, refused))["error"] == "subject_mismatch"
    # Both tasks delivered again: their first outcomes come back, counted already.
    await run(service, stored, attempt(first.attempt_id, number=2))
    await run(service, other, attempt(refused.attempt_id, number=2))

    assert await exchanges(redis, counted) == {
        ("google", "authorized", ""): 1,
        ("google", "failed", "subject_mismatch"): 1,
    }


async def test_an_outcome_unknown_is_counted_once_and_a_bad_state_as_unknown_provider(
    runtime: Runtime, counted: Keys, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = counting_service(runtime, counted), new_id()
    callback = await consent(service, "generic", cid, time.time())
    assert settings.http_timeout_seconds < 2
    fakes.generic.script(callback["code"], Reply(delay=2))
    task = attempt()
    assert (await run(service, callback, task))["error"] == "outcome_unknown"
    assert (await run(service, callback, attempt(task.attempt_id, 2)))["error"] == (
        "outcome_unknown"
    )
    unknown = {"state": "never-issued", "code": "x"}
    assert (await run(service, unknown, attempt()))["error"] == "invalid_state"

    assert await exchanges(redis, counted) == {
        ("custom", "failed", "outcome_unknown"): 1,
        ("unknown", "failed", "invalid_state"): 1,
    }
