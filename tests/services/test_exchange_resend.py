"""A code is sent to the provider once, unless the provider certainly didn't take it.

A timed-out request may have been redeemed: it ends in `outcome_unknown`, never re-sent.
A refused connection never carried the code, and a 429/5xx answer is the provider saying
it didn't process it: the retry sends it again, even when Redis failed to clear the sent
mark (the retry carries `unsent_at`)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.fakes.base import FakeProvider, Reply
from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes, events_for
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.errors import (
    CodeNotTakenError,
    EndpointTimeoutError,
    RateLimitedError,
    ServerError,
    TemporarilyUnavailableError,
    TransientError,
    TransportError,
)
from tokenlife.runtime import Runtime
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange import ExchangeService
from tokenlife.services.exchange_ending import may_have_reached_provider
from tokenlife.settings import Settings


async def run(
    service: ExchangeService, callback: dict[str, str], task: ExchangeAttempt
) -> dict[str, Any]:
    return await service.exchange_code(
        state=callback["state"], code=callback["code"], error=None, error_description=None,
        attempt=task, now=time.time(),
    )  # fmt: skip


def code_requests(fake: FakeProvider, code: str) -> int:
    return sum(1 for r in fake.token_requests if r.get("code") == code)


async def sent_mark(redis: Redis, settings: Settings, state: str) -> Any:
    exchanging = Keys(settings.key_prefix, settings.redis_shards).exchanging(state)
    return await redis.hget(exchanging, "sent_at")


async def test_a_timed_out_request_is_not_sent_again_and_ends_in_outcome_unknown(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic", cid, time.time())
    assert settings.http_timeout_seconds < 2
    fakes.generic.script(callback["code"], Reply(delay=2))
    task = attempt()

    result = await run(service, callback, task)

    assert (result["outcome"], result["error"]) == ("failed", "outcome_unknown")
    assert code_requests(fakes.generic, callback["code"]) == 1
    # The task delivered again, or retried: the same outcome, the code not sent.
    again = await run(service, callback, attempt(task.attempt_id, number=2))
    assert again == result
    assert code_requests(fakes.generic, callback["code"]) == 1
    failed = [d for t, d in await events_for(redis, settings, cid) if t == "exchange.failed"]
    assert [d["error"] for d in failed] == ["outcome_unknown"]


async def test_a_503_is_retried_and_the_retry_succeeds(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic", cid, time.time())
    fakes.generic.script(callback["code"], Reply(status=503, body=b"busy"), Reply())
    task = attempt()

    with pytest.raises(CodeNotTakenError) as raised:
        await run(service, callback, task)
    assert raised.value.error == "server_error"
    assert await sent_mark(redis, settings, callback["state"]) is None  # cleared
    retry = attempt(task.attempt_id, number=2)
    result = await run(service, callback, retry)

    assert result["error"] is None and result["outcome"] == "refresh_token_missing"
    assert code_requests(fakes.generic, callback["code"]) == 2
    assert (await runtime.tokens.get("generic", cid)).version == 1


async def refused_once(
    runtime: Runtime, fakes: Fakes, settings: Settings
) -> tuple[ExchangeService, dict[str, str], ExchangeAttempt, float, PendingStore]:
    """A first run whose code the provider refused with a 503 (it answers on the next):
    the service, the callback, that run's attempt, its `unsent_at`, and the pending store."""
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic", cid, time.time())
    fakes.generic.script(callback["code"], Reply(status=503, body=b"busy"), Reply())
    task = attempt()
    with pytest.raises(CodeNotTakenError) as raised:
        await run(service, callback, task)
    pending = PendingStore(runtime.redis, runtime.keys, Cipher(settings.encryption_keys))
    return service, callback, task, raised.value.unsent_at, pending


async def test_when_redis_kept_the_sent_mark_the_retry_carrying_unsent_at_still_sends(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, callback, task, unsent_at, pending = await refused_once(runtime, fakes, settings)
    # What a Redis error in forget_sent leaves behind: the mark of the run that got a 503.
    await pending.note_sent(callback["state"], unsent_at)
    assert float(await sent_mark(redis, settings, callback["state"])) == unsent_at

    retry = ExchangeAttempt(task.attempt_id, 2, False, unsent_at=unsent_at)
    result = await run(service, callback, retry)

    assert result["error"] is None
    assert code_requests(fakes.generic, callback["code"]) == 2


async def test_a_sent_mark_from_another_run_still_stops_the_code(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, callback, task, unsent_at, pending = await refused_once(runtime, fakes, settings)
    # A later run sent the code and died: its mark is not the one this retry may ignore.
    await pending.note_sent(callback["state"], unsent_at + 1)

    retry = ExchangeAttempt(task.attempt_id, 3, False, unsent_at=unsent_at)
    result = await run(service, callback, retry)

    assert result["error"] == "storage_unavailable"
    assert code_requests(fakes.generic, callback["code"]) == 1


async def test_a_refused_connection_never_carried_the_code_so_the_retry_sends_it(
    runtime: Runtime, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    callback = await consent(service, "generic-unreachable", cid, time.time())

    with pytest.raises(CodeNotTakenError) as raised:
        await run(service, callback, attempt())

    assert raised.value.error == "unreachable"
    assert await sent_mark(redis, settings, callback["state"]) is None


def _sent_transport_error() -> TransportError:
    return TransportError("reset after the request went out")


def _unsent_transport_error() -> TransportError:
    error = TransportError("connection refused")
    error.request_sent = False
    return error


@pytest.mark.parametrize(
    ("error", "reached"),
    [
        pytest.param(EndpointTimeoutError("slow"), True, id="timeout"),
        pytest.param(_sent_transport_error(), True, id="reset-after-sending"),
        pytest.param(_unsent_transport_error(), False, id="never-connected"),
        pytest.param(ServerError(503), False, id="5xx"),
        pytest.param(RateLimitedError(2.0), False, id="429"),
        pytest.param(TemporarilyUnavailableError("busy"), False, id="temporarily_unavailable"),
    ],
)
def test_which_failures_may_have_reached_the_provider(error: TransientError, reached: bool) -> None:
    assert may_have_reached_provider(error) is reached
