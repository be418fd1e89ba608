"""Redis fails after the provider answered: the tokens wait in memory while the save is
retried, and when Redis stays down the code is never sent twice. A redis-server of the
test's own is SIGKILLed while the fake provider holds its answer, then restarted on its AOF."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.base import Reply
from tests.redis_process import RedisProcess
from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes, stream_events, wait_until
from tokenlife.errors import StorageUnavailableError
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange import ExchangeService
from tokenlife.settings import Settings

# The provider holds its answer this long: time to kill Redis after the code arrived
# (well under the test settings' 1 s HTTP timeout).
PROVIDER_DELAY = 0.5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.kill()


async def open_runtime(settings: Settings, server: RedisProcess) -> Runtime:
    return await Runtime.open(
        await load_config(settings.model_copy(update={"redis_url": server.url}))
    )


async def exchange_while_redis_dies(
    service: ExchangeService, fakes: Fakes, server: RedisProcess, task: ExchangeAttempt
) -> tuple[asyncio.Task[dict[str, object]], dict[str, str]]:
    """Start an exchange whose provider answer is delayed; SIGKILL Redis once the code
    reached the provider, so the answer arrives with Redis down."""
    callback = await consent(service, "generic-offline", new_id(), time.time())
    fakes.generic.script(callback["code"], Reply(delay=PROVIDER_DELAY))
    running = asyncio.create_task(
        service.exchange_code(state=callback["state"], code=callback["code"], error=None,
                              error_description=None, attempt=task, now=time.time())
    )  # fmt: skip
    await wait_until(
        lambda: _has_code(fakes, callback["code"]), timeout=10, what="the code at the provider"
    )
    server.kill()
    return running, callback


async def _has_code(fakes: Fakes, code: str) -> bool:
    return any(r.get("code") == code for r in fakes.generic.token_requests)


def code_requests(fakes: Fakes, code: str) -> int:
    return sum(1 for r in fakes.generic.token_requests if r.get("code") == code)


async def test_the_save_is_retried_until_redis_is_back_and_nothing_is_lost(
    settings: Settings, fakes: Fakes, own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await open_runtime(settings, own_redis)
    try:
        service = exchange_service(runtime, save_retry_seconds=30)
        caplog.set_level(logging.WARNING, logger="tokenlife.adapters.storage_errors")
        running, callback = await exchange_while_redis_dies(service, fakes, own_redis, attempt())

        await wait_until(
            lambda: _logged(caplog, "a write to Redis failed"),
            timeout=PROVIDER_DELAY + 10,
            what="a failed save being retried",
        )
        assert not running.done()  # the tokens wait in memory
        own_redis.start()  # on its AOF: the claim and the "sent" note survived
        result = await asyncio.wait_for(running, timeout=40)

        assert result["outcome"] == "refreshable"
        assert code_requests(fakes, callback["code"]) == 1
        cid = str(result["connection_id"])
        connection, tokens = await runtime.tokens.load("generic-offline", cid)
        assert tokens.refresh_token is not None and connection.subject == "alice"
        events = await stream_events(runtime.redis, settings.key_prefix)
        assert [t for t, d in events if d["connection_id"] == cid] == ["connection.authorized"]
    finally:
        await runtime.close()


async def test_when_redis_stays_down_the_retry_ends_in_storage_unavailable_without_resending(
    settings: Settings, fakes: Fakes, own_redis: RedisProcess
) -> None:
    runtime = await open_runtime(settings, own_redis)
    try:
        service = exchange_service(runtime, save_retry_seconds=0.5)
        task = attempt()
        running, callback = await exchange_while_redis_dies(service, fakes, own_redis, task)

        with pytest.raises(StorageUnavailableError):
            await asyncio.wait_for(running, timeout=PROVIDER_DELAY + 20)  # a task retry next

        own_redis.start()
        retry = ExchangeAttempt(task.attempt_id, number=2, final=False)
        result = await service.exchange_code(state=callback["state"], code=callback["code"],
                                             error=None, error_description=None,
                                             attempt=retry, now=time.time())  # fmt: skip

        assert result["error"] == "storage_unavailable"
        assert code_requests(fakes, callback["code"]) == 1  # never sent twice
        cid = str(result["connection_id"])
        events = await stream_events(runtime.redis, settings.key_prefix)
        mine = [(t, d["error"]) for t, d in events if d["connection_id"] == cid]
        assert mine == [("exchange.failed", "storage_unavailable"),
                        ("alert.exchange_failed", "storage_unavailable")]  # fmt: skip
    finally:
        await runtime.close()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)
