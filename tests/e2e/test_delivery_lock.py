"""The alert-delivery lock (issue 9 §4): a slow target cannot keep a run past its lock, a
stopped run leaves its alerts for the next one, and the lock is released with the
compare-and-delete script, so a run never deletes the lock of a run that took over."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.notifiers import WebhookTarget
from tokenlife.core import events
from tokenlife.services.delivery import GROUP, AlertDelivery, DeliveryPolicy

LOCK_SECONDS = 1.0


@dataclass
class SlowHook:
    """A webhook that hangs while `slow` is set; `on_request` runs first (a takeover)."""

    redis: Redis
    lock_key: str
    slow: bool = True
    take_over: bool = False
    received: list[float] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        self.received.append(time.monotonic())
        if self.take_over:
            # What another run does once this run's lock has expired.
            await self.redis.set(self.lock_key, "another-run")
        if self.slow:
            await asyncio.sleep(30)
        return web.Response(text="ok")


@dataclass
class Rig:
    delivery: AlertDelivery
    hook: SlowHook
    keys: Keys
    stream: EventStream


@pytest.fixture
async def rig(redis: Redis) -> AsyncIterator[Rig]:
    keys = Keys(f"lock-{uuid.uuid4().hex[:8]}")
    hook = SlowHook(redis, keys.alerts_lock)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        target = WebhookTarget("slow", f"http://127.0.0.1:{server.port}/hook", b"s", http, 60)
        delivery = AlertDelivery(
            redis=redis, keys=keys, targets={"slow": target}, routes=(),
            default_targets=("slow",),
            policy=DeliveryPolicy(dedup_window_seconds=3600, retries=0, retry_base_seconds=0.01,
                                  claim_idle_seconds=0, docs_url="docs", lock_seconds=LOCK_SECONDS),
            consumer="test",
        )  # fmt: skip
        await delivery.run_once(time.time())  # the consumer group: alerts from here on
        yield Rig(delivery, hook, keys, EventStream(redis, keys, 10_000))
        streams = [keys.events(shard) for shard in keys.all_shards]
        await redis.delete(*streams, keys.alerts_lock, keys.counters)


async def unacknowledged(redis: Redis, keys: Keys) -> int:
    """Entries read by the group and not acknowledged, over every shard's stream."""
    return sum([(await redis.xpending(keys.events(shard), GROUP))["pending"]
                for shard in keys.all_shards])  # fmt: skip


async def raise_alert(rig: Rig) -> None:
    await rig.stream.emit(
        events.CONFIGURATION, "crm", None, time.time(), severity="error", code="test",
        message="a finding", fix="fix it", source=None,
    )  # fmt: skip


async def test_a_slow_target_cannot_keep_a_run_past_its_lock(rig: Rig, redis: Redis) -> None:
    await raise_alert(rig)
    started = time.monotonic()
    totals = await rig.delivery.run_once(time.time())
    took = time.monotonic() - started

    assert rig.hook.received, "the target was called"
    assert totals["stopped_out_of_time"] == 1 and totals["sent"] == 0
    assert took < LOCK_SECONDS, f"the run took {took:.2f} s, past its {LOCK_SECONDS} s lock"
    assert await redis.exists(rig.keys.alerts_lock) == 0  # released, not left to expire
    assert await redis.xlen(rig.keys.alerts_dead) == 0  # not the target's fault
    assert await unacknowledged(redis, rig.keys) == 1  # not acknowledged: the next run has it

    rig.hook.slow = False
    totals = await rig.delivery.run_once(time.time())
    assert totals["sent"] == 1
    assert await unacknowledged(redis, rig.keys) == 0


async def test_a_run_never_releases_a_lock_it_no_longer_holds(rig: Rig, redis: Redis) -> None:
    await raise_alert(rig)
    rig.hook.take_over = True
    await rig.delivery.run_once(time.time())
    assert rig.hook.received
    assert await redis.get(rig.keys.alerts_lock) == "another-run"


async def test_a_resolution_cut_short_by_the_lock_is_sent_by_the_next_run(
    rig: Rig, redis: Redis
) -> None:
    rig.hook.slow = False
    await rig.stream.emit(events.REFRESH_FAILING, "crm", "user-1", time.time(), error="timeout")
    assert (await rig.delivery.run_once(time.time()))["sent"] == 1
    rig.hook.slow = True
    await rig.stream.emit(events.CONNECTION_RECOVERED, "crm", "user-1", time.time(),
                          failed_attempts=3)  # fmt: skip
    assert (await rig.delivery.run_once(time.time()))["stopped_out_of_time"] == 1

    rig.hook.slow = False
    assert (await rig.delivery.run_once(time.time()))["sent"] == 1
    [alert, _, resolved] = rig.hook.bodies  # the one the stopped run sent, then again
    assert (resolved["kind"], resolved["connection_ids"]) == ("resolved", ["user-1"])
    assert resolved["incident_key"] == alert["incident_key"]
    assert await unacknowledged(redis, rig.keys) == 0
