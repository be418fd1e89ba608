"""Duplicate delivery of tokenlife.exchange_code through the real worker: the same task id
twice (what the broker does after a worker died before acknowledging), or another id with
the same state: one code request at the provider, the same summary, no exchange.failed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, consent, events_for, stored_connection
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


async def send(worker: WorkerHandle, task_id: str, **kwargs: Any) -> dict[str, Any]:
    result = worker.app.send_task("tokenlife.exchange_code", kwargs=kwargs, task_id=task_id)
    summary: dict[str, Any] = await asyncio.to_thread(result.get, timeout=60)
    # Forget the stored result, so the next send with this id waits for its own run.
    await asyncio.to_thread(result.forget)
    return summary


async def test_an_exchange_task_delivered_twice_sends_the_code_once(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, "microsoft", cid, login_hint="alice")
    task_id = str(uuid.uuid4())
    kwargs = {"state": callback["state"], "code": callback["code"]}

    first = await send(worker, task_id, **kwargs)
    redelivered = await send(worker, task_id, **kwargs)
    other_id = await send(worker, str(uuid.uuid4()), **kwargs)

    assert first["outcome"] == "refreshable"
    assert redelivered == first
    assert other_id == first
    received = worker.log().count(f"tokenlife.exchange_code[{task_id}] received")
    assert received == 2, "the worker did not run the same task id twice"
    codes = [r for r in fakes.microsoft.token_requests if r.get("code") == callback["code"]]
    assert len(codes) == 1
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert types == ["connection.authorized"]
    connection = await stored_connection(tl, "microsoft", cid)
    assert (connection.version, connection.subject) == (1, "alice")
