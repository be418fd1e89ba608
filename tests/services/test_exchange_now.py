"""ExchangeNow: the exchange task's work in this process, its retries done here within a
bound, its replay safety the task's, and a caller that gives up never loses the tokens.
Against the real Runtime, Redis and the generic fake provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.services.exchange_support import consent, new_id
from tests.support import Fakes, event_types, wait_until
from tokenlife.runtime import Runtime
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange_now import ExchangeNow
from tokenlife.settings import Settings


def exchange_now(runtime: Runtime, *, retries: int = 3, wait: float = 10.0) -> ExchangeNow:
    return ExchangeNow(
        exchange=runtime.exchange, max_retries=retries, retry_base_seconds=0.01,
        retry_max_seconds=0.05, wait_seconds=wait, jitter=lambda: 0.0,
    )  # fmt: skip


def sent(fakes: Fakes, code: str) -> int:
    """How often the token endpoint saw this code."""
    return sum(1 for r in fakes.generic.token_requests if r.get("code") == code)


async def until_sent(fakes: Fakes, code: str) -> None:
    async def was_sent() -> bool:
        return sent(fakes, code) == 1

    await wait_until(was_sent, timeout=5, what="the code to reach the token endpoint")


async def run(service: ExchangeNow, callback: dict[str, str]) -> dict[str, Any]:
    return await service.exchange(
        state=callback["state"], code=callback.get("code"), error=callback.get("error"),
        error_description=callback.get("error_description"), iss=callback.get("iss"),
    )  # fmt: skip


async def test_a_provider_503_is_retried_here_and_the_second_answer_is_stored(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(runtime.exchange, "generic", cid, time.time())
    fakes.generic.script(callback["code"], Reply(status=503), Reply())

    result = await run(exchange_now(runtime), callback)

    assert (result["outcome"], result["status"]) == ("refresh_token_missing", "degraded")
    assert sent(fakes, callback["code"]) == 2
    assert (await event_types(redis, settings, cid)).count("connection.authorized") == 1


async def test_the_same_state_again_gets_the_first_outcome_and_the_code_is_not_sent(
    runtime: Runtime, fakes: Fakes
) -> None:
    callback = await consent(runtime.exchange, "generic", new_id(), time.time())
    service = exchange_now(runtime)

    first = await run(service, callback)
    again = await run(service, callback)

    assert first["integration"] == "generic" and again == first
    assert sent(fakes, callback["code"]) == 1


async def test_a_second_caller_while_the_first_runs_waits_for_its_outcome(
    runtime: Runtime, fakes: Fakes
) -> None:
    callback = await consent(runtime.exchange, "generic", new_id(), time.time())
    fakes.generic.script(callback["code"], Reply(delay=0.3))
    service = exchange_now(runtime)

    first = asyncio.ensure_future(run(service, callback))
    await until_sent(fakes, callback["code"])
    second = await run(service, callback)

    assert second["outcome"] == "refresh_token_missing"
    assert await first == second
    assert sent(fakes, callback["code"]) == 1


def worker_task(runtime: Runtime, callback: dict[str, str], task_id: str) -> Any:
    """What the worker's exchange_code task runs: an attempt of its own on the state."""
    return runtime.exchange.exchange_code(
        state=callback["state"], code=callback.get("code"), error=None, error_description=None,
        attempt=ExchangeAttempt(task_id, 1, False), now=time.time(),
    )  # fmt: skip


async def test_while_another_process_holds_the_state_the_call_waits_for_its_outcome(
    runtime: Runtime, fakes: Fakes
) -> None:
    callback = await consent(runtime.exchange, "generic", new_id(), time.time())
    fakes.generic.script(callback["code"], Reply(delay=0.5))

    elsewhere = asyncio.ensure_future(worker_task(runtime, callback, "celery-task-1"))
    await until_sent(fakes, callback["code"])
    result = await run(exchange_now(runtime), callback)

    assert result["outcome"] == "refresh_token_missing"
    assert result == await elsewhere
    assert sent(fakes, callback["code"]) == 1


async def test_past_the_bound_a_state_held_elsewhere_is_in_progress_not_invalid(
    runtime: Runtime, fakes: Fakes
) -> None:
    callback = await consent(runtime.exchange, "generic", new_id(), time.time())
    fakes.generic.script(callback["code"], Reply(delay=0.5))

    elsewhere = asyncio.ensure_future(worker_task(runtime, callback, "celery-task-1"))
    await until_sent(fakes, callback["code"])
    result = await run(exchange_now(runtime, wait=0.0), callback)
    # The worker's own replay rule is unchanged: another task is refused as before.
    other_task = await worker_task(runtime, callback, "celery-task-2")

    assert (result["outcome"], result["error"]) == ("in_progress", None)
    assert (other_task["outcome"], other_task["error"]) == ("failed", "invalid_state")
    assert (await elsewhere)["outcome"] == "refresh_token_missing"
    assert await run(exchange_now(runtime, wait=0.0), callback) == await elsewhere
    assert sent(fakes, callback["code"]) == 1


async def test_past_the_bound_the_last_attempt_ends_the_exchange_as_failed(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(runtime.exchange, "generic", cid, time.time())
    fakes.generic.script(callback["code"], Reply(status=503))  # every time
    service = exchange_now(runtime, retries=20, wait=0.0)

    result = await run(service, callback)

    assert (result["outcome"], result["error"]) == ("failed", "server_error")
    # The first try, then the one final try the bound leaves: not twenty.
    assert sent(fakes, callback["code"]) == 2
    assert await run(service, callback) == result  # ended: the same outcome, nothing sent
    assert sent(fakes, callback["code"]) == 2
    assert "exchange.failed" in await event_types(redis, settings, cid)


async def test_a_caller_that_gives_up_does_not_lose_the_tokens_the_provider_issued(
    runtime: Runtime, fakes: Fakes
) -> None:
    callback = await consent(runtime.exchange, "generic", new_id(), time.time())
    fakes.generic.script(callback["code"], Reply(delay=0.3))
    service = exchange_now(runtime)

    caller = asyncio.ensure_future(run(service, callback))
    await until_sent(fakes, callback["code"])
    caller.cancel()
    assert await service.wait_running(10)

    result = await run(service, callback)  # the outcome the abandoned exchange stored
    assert result["outcome"] == "refresh_token_missing" and result["status"] == "degraded"
    assert sent(fakes, callback["code"]) == 1


async def test_a_refused_authorization_ends_at_once(runtime: Runtime, fakes: Fakes) -> None:
    callback = await consent(runtime.exchange, "generic", new_id(), time.time(), deny="1")

    result = await run(exchange_now(runtime), callback)

    assert (result["outcome"], result["error"]) == ("failed", "access_denied")
    assert result["diagnosis"] and result["fixes"]
