"""tokenlife.event_handlers against the real Redis: handlers by event type, at least once,
resumed where a run stopped, poison events dead-lettered; in this process, and as
`tokenlife events consume` processes killed with SIGKILL or stopped with SIGTERM.

Each test has a key prefix of its own, so its group reads streams no other test writes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.app_worker import AppWorker, app_worker  # noqa: F401 (a fixture)
from tests.fakes.app_celery import events_key
from tests.fakes.app_events import key as app_key
from tests.redis_process import RedisProcess
from tests.support import wait_until, worker_environment
from tokenlife.adapters.event_consumer import split_id
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.errors import UsageError
from tokenlife.event_handlers import Event, EventHandlers
from tokenlife.events import reader_client
from tokenlife.models import Event as ModelEvent
from tokenlife.settings import Settings

# The namespace of the Celery task ids a handler sends (event_consumption.py): it must not
# change, or a redelivery after an upgrade would send a new id.
TASK_IDS = uuid.UUID("0d6f2b36-8a53-4d8e-9a0e-3f5c1b7e2a41")


@pytest.fixture
async def own(settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """The run's settings with a key prefix of this test's own."""
    prefix = f"{settings.key_prefix}-eh-{uuid.uuid4().hex[:8]}"
    yield settings.model_copy(update={"key_prefix": prefix})
    async for key in redis.scan_iter(match=f"{prefix}:*"):
        await redis.delete(key)


@pytest.fixture
def stream(redis: Redis, own: Settings) -> EventStream:
    return EventStream(redis, Keys(own.key_prefix, own.redis_shards), own.events_max_length)


async def emit(stream: EventStream, type_: str, connection_id: str, **fields: Any) -> str:
    """An event about google/connection_id; a few ms after the one before, so the shards'
    events merge in the order they were emitted."""
    await asyncio.sleep(0.003)
    return await stream.emit(type_, "google", connection_id, time.time(), **fields)


@asynccontextmanager
async def consuming(
    handlers: EventHandlers, own: Settings, consumer: str = "c1", **options: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """`handlers.consume` running in this loop; stopped (gracefully) on leaving."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        handlers.consume(consumer, settings=own, stop=stop, block_ms=200, **options)
    )
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A condition of this process's own state, for wait_until."""

    async def check() -> bool:
        return condition()

    return check


async def pending(redis: Redis, own: Settings, group: str) -> int:
    keys = Keys(own.key_prefix, own.redis_shards)
    total = 0
    for shard in keys.all_shards:
        groups = await redis.xinfo_groups(keys.events(shard))
        total += sum(int(g["pending"]) for g in groups if g["name"] == group)
    return total


async def test_each_handler_gets_the_events_of_its_types_and_every_event_is_acknowledged(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    seen: list[tuple[str, str, str | None]] = []
    handlers = EventHandlers("app", start="0")

    @handlers.on("connection.authorized")
    async def authorized(event: Event) -> None:
        seen.append(("authorized", event.type, event.connection_id))

    @handlers.on("alert.*")
    def alerted(event: Event) -> None:  # a plain function: run in a thread
        seen.append(("alert", event.type, event.connection_id))

    handlers.on("connection.deleted", lambda event: seen.append(
        ("deleted", event.type, event.connection_id)))  # fmt: skip

    await emit(stream, "connection.authorized", "u1", status="active")
    await emit(stream, "token.refreshed", "u1")  # no handler: acknowledged all the same
    await emit(stream, "alert.refresh_token_missing", "u2")
    await emit(stream, "alert.reauthorization_required", "u3")
    await emit(stream, "exchange.failed", "u4")
    await emit(stream, "connection.deleted", "u1")

    async with consuming(handlers, own):
        await wait_until(holds(lambda: len(seen) == 4), timeout=10, what="4 events")
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")

    assert seen == [
        ("authorized", "connection.authorized", "u1"),
        ("alert", "alert.refresh_token_missing", "u2"),
        ("alert", "alert.reauthorization_required", "u3"),
        ("deleted", "connection.deleted", "u1"),
    ]


async def _none_pending(redis: Redis, own: Settings, group: str) -> bool:
    return await pending(redis, own, group) == 0


async def test_a_handler_gets_the_event_as_the_http_api_gives_it(
    own: Settings, stream: EventStream
) -> None:
    got: list[Event] = []
    handlers = EventHandlers("app", {"*": got.append}, start="0")
    entry_id = await emit(stream, "alert.refresh_token_missing", "u1", status="degraded")

    async with consuming(handlers, own):
        await wait_until(holds(lambda: bool(got)), timeout=10, what="the event")

    event = got[0]
    assert isinstance(event, ModelEvent)
    assert (event.id, event.type, event.connection_id) == (
        entry_id,
        "alert.refresh_token_missing",
        "u1",
    )
    assert event.data["status"] == "degraded" and event.occurred_at.tzinfo is not None


async def test_a_failed_event_comes_back_after_the_idle_time_and_holds_nobody_up(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    calls: list[str] = []
    handlers = EventHandlers("app", start="0", claim_idle_seconds=0.3)

    @handlers.on("connection.authorized")
    async def flaky(event: Event) -> None:
        calls.append(str(event.connection_id))
        if event.connection_id == "a" and calls.count("a") == 1:
            raise RuntimeError("the app's database was away")

    await emit(stream, "connection.authorized", "a")
    await emit(stream, "connection.authorized", "b")

    async with consuming(handlers, own):
        await wait_until(holds(lambda: calls.count("a") == 2), timeout=10,
                         what="a second delivery of a")  # fmt: skip
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")

    assert calls == ["a", "b", "a"]
    assert await handlers.dead_letters(settings=own) == []


async def test_an_event_that_always_fails_is_dead_lettered_after_max_deliveries_and_replayed(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    calls: list[str] = []
    handlers = EventHandlers("app", start="0", max_deliveries=3, claim_idle_seconds=0.2)

    @handlers.on("alert.*")
    def poisoned(event: Event) -> None:
        calls.append(event.type)
        raise ValueError("no such customer\nin the app")

    handlers.on("connection.deleted", lambda event: calls.append(event.type))
    poison = await emit(stream, "alert.refresh_failing", "u1")
    await emit(stream, "connection.deleted", "u2")

    async with consuming(handlers, own):
        await wait_until(lambda: _dead_letter_count(handlers, own, 1), timeout=15,
                         what="the dead letter")  # fmt: skip
        assert await pending(redis, own, "app") == 0

    assert calls.count("alert.refresh_failing") == 3
    assert calls.count("connection.deleted") == 1
    [letter] = await handlers.dead_letters(settings=own)
    assert (letter.entry_id, letter.type, letter.deliveries) == (poison, "alert.refresh_failing", 3)
    assert letter.handler.endswith("poisoned")
    assert letter.error == "ValueError: no such customer in the app"
    assert letter.data["connection_id"] == "u1" and letter.consumer == "c1"

    fixed = EventHandlers("app", {"alert.*": lambda event: calls.append("fixed " + event.type)})
    [outcome] = await fixed.replay(settings=own)

    assert (outcome.letter_id, outcome.outcome, outcome.error) == (
        letter.letter_id,
        "handled",
        None,
    )
    assert calls[-1] == "fixed alert.refresh_failing"
    assert await handlers.dead_letters(settings=own) == []


async def _dead_letter_count(handlers: EventHandlers, own: Settings, n: int) -> bool:
    return len(await handlers.dead_letters(settings=own)) == n


async def test_a_replay_that_fails_again_keeps_the_dead_letter_and_an_unknown_id_is_refused(
    own: Settings, stream: EventStream
) -> None:
    handlers = EventHandlers("app", {"*": _fail}, start="0", max_deliveries=1)
    await emit(stream, "connection.deleted", "u1")
    async with consuming(handlers, own):
        await wait_until(lambda: _dead_letter_count(handlers, own, 1), timeout=10,
                         what="the dead letter")  # fmt: skip
    [letter] = await handlers.dead_letters(settings=own)

    [outcome] = await handlers.replay([letter.letter_id], settings=own)
    assert (outcome.outcome, outcome.error) == ("failed", "RuntimeError: still broken")
    assert await handlers.dead_letters(settings=own) == [letter]
    with pytest.raises(UsageError, match="no dead letter 1-0/0"):
        await handlers.replay(["1-0/0"], settings=own)


def _fail(event: Event) -> None:
    raise RuntimeError("still broken")


async def test_a_dead_consumers_events_are_claimed_after_the_idle_time(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    handlers = EventHandlers("app", start="0", claim_idle_seconds=0.3)
    got: list[str] = []
    handlers.on("connection.*", lambda event: got.append(str(event.connection_id)))
    await emit(stream, "connection.authorized", "u1")
    await emit(stream, "connection.deleted", "u2")
    # Another consumer of the group read them and died before acknowledging.
    keys = Keys(own.key_prefix, own.redis_shards)
    for shard in keys.all_shards:
        await redis.xgroup_create(keys.events(shard), "app", id="0", mkstream=True)
    streams: dict[Any, Any] = {keys.events(shard): ">" for shard in keys.all_shards}
    await redis.xreadgroup("app", "gone", streams)
    assert await pending(redis, own, "app") == 2

    async with consuming(handlers, own, consumer="alive"):
        await wait_until(holds(lambda: len(got) == 2), timeout=10, what="claims")
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")

    assert got == ["u1", "u2"]


async def test_an_event_delivered_past_max_deliveries_unacknowledged_is_dead_lettered_unhandled(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    # What a handler that kills its process leaves: deliveries, and never an ack.
    got: list[str] = []
    handlers = EventHandlers("app", {"*": got.append}, start="0", max_deliveries=3)
    entry_id = await emit(stream, "connection.authorized", "u1")
    keys = Keys(own.key_prefix, own.redis_shards)
    _, shard = split_id(entry_id)
    assert shard is not None
    await redis.xgroup_create(keys.events(shard), "app", id="0", mkstream=True)
    for position in (">", "0", "0"):  # delivered 3 times to c1
        await redis.xreadgroup("app", "c1", {keys.events(shard): position})

    async with consuming(handlers, own):  # its own pending read: the 4th delivery
        await wait_until(lambda: _dead_letter_count(handlers, own, 1), timeout=10,
                         what="the dead letter")  # fmt: skip

    assert got == []
    [letter] = await handlers.dead_letters(settings=own)
    assert (letter.entry_id, letter.deliveries, letter.handler) == (entry_id, 4, "-")
    assert "never acknowledged" in letter.error


async def test_a_restart_resumes_after_the_last_event_nothing_skipped_nothing_repeated(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    got: list[str] = []
    handlers = EventHandlers("app", {"connection.*": lambda e: got.append(str(e.connection_id))})
    async with consuming(handlers, own):  # the group is created at "$": from now on
        await _wait_for_group(redis, own, "app")
        await emit(stream, "connection.authorized", "first")
        await wait_until(holds(lambda: got == ["first"]), timeout=10, what="first")
    await emit(stream, "connection.authorized", "while-stopped-1")
    await emit(stream, "connection.deleted", "while-stopped-2")

    async with consuming(handlers, own):
        await wait_until(holds(lambda: len(got) == 3), timeout=10, what="the rest")
        await emit(stream, "connection.authorized", "after")
        await wait_until(holds(lambda: len(got) == 4), timeout=10, what="after")

    assert got == ["first", "while-stopped-1", "while-stopped-2", "after"]


async def _wait_for_group(redis: Redis, own: Settings, group: str) -> None:
    keys = Keys(own.key_prefix, own.redis_shards)

    async def created() -> bool:
        if not await redis.exists(keys.events(keys.shards - 1)):
            return False
        groups = await redis.xinfo_groups(keys.events(keys.shards - 1))
        return any(g["name"] == group for g in groups)

    await wait_until(created, timeout=10, what=f"group {group}")


async def test_a_new_group_starts_after_a_given_id(own: Settings, stream: EventStream) -> None:
    await emit(stream, "connection.authorized", "before")
    since = await emit(stream, "connection.authorized", "at")
    await emit(stream, "connection.authorized", "after-1")
    await emit(stream, "connection.deleted", "after-2")
    got: list[str] = []
    handlers = EventHandlers("late", {"*": lambda e: got.append(str(e.connection_id))},
                             start=since)  # fmt: skip

    async with consuming(handlers, own):
        await wait_until(holds(lambda: len(got) == 2), timeout=10, what="2 events")

    assert got == ["after-1", "after-2"]


async def test_a_stop_lets_the_handler_in_flight_finish_and_acknowledges_its_event(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []
    handlers = EventHandlers("app", start="0")

    @handlers.on("connection.authorized")
    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        finished.append(str(event.connection_id))

    await emit(stream, "connection.authorized", "u1")
    await emit(stream, "connection.authorized", "u2")
    stop = asyncio.Event()
    task = asyncio.ensure_future(handlers.consume("c1", settings=own, stop=stop, count=1))
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.sleep(0.2)
    assert not task.done(), "it stopped before the handler in flight finished"
    release.set()
    await asyncio.wait_for(task, timeout=10)

    assert finished == ["u1"]
    assert await pending(redis, own, "app") <= 1  # u1 is acknowledged; u2 may have been read

    async with consuming(handlers, own):  # u2 waited for the next run
        await wait_until(holds(lambda: finished == ["u1", "u2"]), timeout=10, what="u2")
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")


async def test_a_cancelled_run_leaves_the_event_in_flight_pending_for_the_next(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    started = asyncio.Event()
    calls: list[str] = []
    handlers = EventHandlers("app", start="0")

    @handlers.on("connection.authorized")
    async def stuck(event: Event) -> None:
        calls.append(str(event.connection_id))
        started.set()
        if len(calls) == 1:
            await asyncio.Event().wait()

    await emit(stream, "connection.authorized", "u1")
    task = asyncio.ensure_future(handlers.consume("c1", settings=own))
    await asyncio.wait_for(started.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending(redis, own, "app") == 1

    async with consuming(handlers, own):
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="the ack")

    assert calls == ["u1", "u1"]


async def test_a_celery_signature_handler_sends_the_apps_task_with_the_event(
    own: Settings,
    stream: EventStream,
    redis: Redis,
    app_worker: AppWorker,  # noqa: F811
) -> None:
    from celery import Signature

    # The app's task by name, bound to an app on tokenlife's broker, as the app's own
    # `record_event.s(...)` is in the app's processes.
    task: Signature = app_worker.client.signature(
        "test_app.record_event", kwargs={"label": "refreshed"}, queue=app_worker.queue
    )
    handlers = EventHandlers("app", {"token.refreshed": task}, start="0")
    entry_id = await emit(stream, "token.refreshed", "u1", refresh_token_rotated=True)
    key = events_key(_prefix_of(app_worker))

    async with consuming(handlers, own):
        await wait_until(lambda: _recorded(redis, key, entry_id), timeout=30, what="the task")

    [kept] = [json.loads(x) for x in await redis.lrange(key, 0, -1) if entry_id in x]
    assert kept["label"] == "refreshed"
    sent = ModelEvent.from_json(kept["event"])
    assert (sent.id, sent.type, sent.connection_id) == (entry_id, "token.refreshed", "u1")
    assert sent.data["refresh_token_rotated"] is True
    # Made from the group, the event and the handler's place: the same on a redelivery.
    expected = uuid.uuid5(TASK_IDS, f"app/{sent.data['event_id']}/0")
    assert kept["task_id"] == str(expected)


def _prefix_of(worker: AppWorker) -> str:
    return worker.queue.removesuffix("-app")


async def _recorded(redis: Redis, key: str, entry_id: str) -> bool:
    return any(entry_id in x for x in await redis.lrange(key, 0, -1))


def test_handlers_refuse_what_cannot_work() -> None:
    with pytest.raises(UsageError, match="group"):
        EventHandlers("")
    with pytest.raises(UsageError, match="start"):
        EventHandlers("app", start="yesterday")
    with pytest.raises(UsageError, match="max_deliveries"):
        EventHandlers("app", max_deliveries=0)
    with pytest.raises(UsageError, match="a handler is a function or a Celery signature"):
        EventHandlers("app").on("alert.*", "page me")


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("connection.authorized", "connection.authorized", "connection.deleted"),
        ("alert.*", "alert.refresh_token_missing", "exchange.failed"),
        ("*", "token.refreshed", None),
        ("connection.*", "connection.recovered", "alert.configuration"),
    ],
)
def test_patterns_are_globs_of_event_types(pattern: str, matches: str, misses: str | None) -> None:
    handlers = EventHandlers("app", {pattern: _fail})

    assert handlers.handlers_for(matches) == [_fail]
    if misses is not None:
        assert handlers.handlers_for(misses) == []


async def test_a_consumer_group_redis_lost_is_recreated_and_nothing_handled_comes_again(
    own: Settings, stream: EventStream, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[str] = []
    in_handler, release = asyncio.Event(), asyncio.Event()
    handlers = EventHandlers("app", start="0")

    @handlers.on("connection.*")
    async def record(event: Event) -> None:
        got.append(str(event.connection_id))
        if event.connection_id == "before":
            in_handler.set()
            await release.wait()

    keys = Keys(own.key_prefix, own.redis_shards)
    async with consuming(handlers, own):
        await emit(stream, "connection.authorized", "before")
        await asyncio.wait_for(in_handler.wait(), timeout=10)
        # Redis loses the group while the handler runs (a restart without persistence, a
        # failover, a flush), and an event comes meanwhile: "$" would skip it.
        for shard in keys.all_shards:
            await redis.xgroup_destroy(keys.events(shard), "app")
        await emit(stream, "connection.deleted", "meanwhile")
        release.set()
        await wait_until(holds(lambda: len(got) == 2), timeout=10, what="meanwhile")
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")
        await emit(stream, "connection.deleted", "after")
        await wait_until(holds(lambda: len(got) == 3), timeout=10, what="after")

    assert got == ["before", "meanwhile", "after"]  # "before" not again: it was handled
    assert "event handlers: consumer group app lost, recreated" in caplog.text
    assert "Redis unavailable" not in caplog.text


async def test_an_async_handler_that_hangs_is_given_up_after_its_timeout_and_tried_again(
    own: Settings, stream: EventStream, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    handlers = EventHandlers("app", start="0", claim_idle_seconds=0.3,
                             handler_timeout_seconds=0.5)  # fmt: skip

    @handlers.on("connection.authorized")
    async def hangs_once(event: Event) -> None:
        calls.append(str(event.connection_id))
        if event.connection_id == "a" and calls.count("a") == 1:
            await asyncio.Event().wait()

    await emit(stream, "connection.authorized", "a")
    await emit(stream, "connection.authorized", "b")
    async with consuming(handlers, own):
        await wait_until(holds(lambda: calls.count("a") == 2), timeout=10, what="a again")
        await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")

    assert calls == ["a", "b", "a"]
    [given_up] = [r for r in caplog.records if "handler_timeout_seconds" in r.getMessage()]
    assert given_up.levelname == "ERROR"
    assert "hangs_once on connection.authorized" in given_up.getMessage()


async def test_a_plain_handler_that_hangs_is_abandoned_and_the_next_ones_run(
    own: Settings, stream: EventStream, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    release = threading.Event()
    handlers = EventHandlers("app", start="0", claim_idle_seconds=0.3, max_deliveries=2,
                             handler_timeout_seconds=0.5)  # fmt: skip

    @handlers.on("connection.authorized")
    def hangs_once(event: Event) -> None:  # a plain function: in a thread
        calls.append(str(event.connection_id))
        if event.connection_id == "a" and calls.count("a") == 1:
            release.wait(timeout=30)

    await emit(stream, "connection.authorized", "a")
    await emit(stream, "connection.authorized", "b")
    try:
        async with consuming(handlers, own):
            await wait_until(holds(lambda: calls.count("a") == 2), timeout=10, what="a again")
            await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")
            assert not release.is_set()  # the first thread still hangs, abandoned
    finally:
        release.set()

    assert calls == ["a", "b", "a"]
    assert "its thread is left to finish" in caplog.text
    assert await handlers.dead_letters(settings=own) == []


async def test_a_consumer_that_stalled_past_the_idle_time_leaves_what_another_claimed(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    seen: list[tuple[str, str]] = []  # (consumer, connection id), from two threads
    claimed = threading.Event()
    first = EventHandlers("app", start="0", claim_idle_seconds=0.3)
    second = EventHandlers("app", start="0", claim_idle_seconds=0.3)

    @first.on("connection.*")
    async def stalls(event: Event) -> None:
        seen.append(("c1", str(event.connection_id)))
        if event.connection_id == "a":
            claimed.wait(timeout=10)  # blocks c1's event loop: nothing of c1 runs

    @second.on("connection.*")
    async def takes_over(event: Event) -> None:
        seen.append(("c2", str(event.connection_id)))
        if event.connection_id == "a":
            claimed.set()

    for connection_id in ("a", "b", "c"):
        await emit(stream, "connection.authorized", connection_id)
    stop_c1 = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def run_c1() -> None:  # in a thread with a loop of its own, as another process
        loops.append(asyncio.get_running_loop())
        await first.consume("c1", settings=own, stop=stop_c1, block_ms=200)

    c1 = asyncio.ensure_future(asyncio.to_thread(asyncio.run, run_c1()))
    try:
        await wait_until(holds(lambda: ("c1", "a") in seen), timeout=10, what="c1 on a")
        async with consuming(second, own, consumer="c2"):
            took_over = {("c2", "a"), ("c2", "b"), ("c2", "c")}
            await wait_until(holds(lambda: took_over <= set(seen)), timeout=10,
                             what="c2 took over")  # fmt: skip
            await wait_until(lambda: _none_pending(redis, own, "app"), timeout=10, what="acks")
        # c2 is stopped: the next event is c1's, handled once c1 is past its batch.
        await emit(stream, "connection.deleted", "later")
        await wait_until(holds(lambda: ("c1", "later") in seen), timeout=10, what="later")
    finally:
        claimed.set()
        if loops:
            loops[0].call_soon_threadsafe(stop_c1.set)
        await asyncio.wait_for(c1, timeout=30)

    # a was in c1's hands when c1 stalled; b and c were c2's to handle, once.
    assert sorted(seen) == [("c1", "a"), ("c1", "later"), ("c2", "a"), ("c2", "b"), ("c2", "c")]


async def test_the_event_readers_probe_a_silent_redis_within_a_minute(own: Settings) -> None:
    # Whatever redis-py's defaults (the OS's two hours before redis-py 6): a blocked read or
    # an ack on a connection whose peer went silent fails within about a minute.
    redis = reader_client(own)
    pool: Any = redis.connection_pool
    connection = pool.make_connection()
    try:
        await connection.connect()
        sock = connection._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    finally:
        await connection.disconnect()
        await redis.aclose()


# The consumer as a process of its own: `tokenlife events consume`.


@pytest.fixture
def consumer_env(own: Settings) -> dict[str, str]:
    return {**worker_environment(own), "TEST_EVENTS_CLAIM_IDLE_SECONDS": "0.5"}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def start_consumer(
    env: dict[str, str], log: Path, processes: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlife.cli", "events", "consume",
             "tests.fakes.app_events:handlers", "--consumer", "app-1"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    processes.append(process)
    return process


async def listed(redis: Redis, key: str) -> list[str]:
    return [str(x) for x in await redis.lrange(key, 0, -1)]


async def test_a_consumer_killed_mid_handling_handles_the_event_again_after_a_restart(
    own: Settings,
    stream: EventStream,
    redis: Redis,
    consumer_env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    prefix, log = own.key_prefix, tmp_path / "consumer.log"
    done_key, started_key = app_key(prefix, "done"), app_key(prefix, "started")
    first = start_consumer(consumer_env, log, processes)
    await emit(stream, "connection.authorized", "early")
    await wait_until(lambda: _has(redis, done_key, "early"), timeout=30, what="early handled")
    await emit(stream, "alert.refresh_token_missing", "u2")
    await emit(stream, "connection.authorized", "held", hold=True)
    await wait_until(lambda: _has(redis, started_key, "held"), timeout=30, what="held started")

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert await pending(redis, own, "test-app") == 1
    start_consumer(consumer_env, log, processes)
    await redis.set(app_key(prefix, "release"), "1")
    await wait_until(lambda: _has(redis, done_key, "held"), timeout=30, what="held handled")
    await wait_until(lambda: _none_pending(redis, own, "test-app"), timeout=30, what="acks")

    assert await listed(redis, started_key) == ["early", "held", "held"]
    assert await listed(redis, done_key) == ["early", "held"]
    assert await listed(redis, app_key(prefix, "alerts")) == ["alert.refresh_token_missing"]


async def _has(redis: Redis, key: str, value: str) -> bool:
    return value in await listed(redis, key)


async def test_sigterm_finishes_the_handler_in_flight_acknowledges_and_exits(
    own: Settings,
    stream: EventStream,
    redis: Redis,
    consumer_env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    prefix, log = own.key_prefix, tmp_path / "consumer.log"
    process = start_consumer(consumer_env, log, processes)
    await emit(stream, "connection.authorized", "held", hold=True)
    await wait_until(lambda: _has(redis, app_key(prefix, "started"), "held"), timeout=30,
                     what="the handler to start")  # fmt: skip

    process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert process.poll() is None, log.read_text()
    await redis.set(app_key(prefix, "release"), "1")
    assert await asyncio.to_thread(process.wait, 30) == 0, log.read_text()

    assert await listed(redis, app_key(prefix, "done")) == ["held"]
    assert await pending(redis, own, "test-app") == 0
    assert "stopping once the event in flight is handled" in log.read_text()


async def test_poison_events_are_dead_lettered_and_listed_and_replayed_from_the_cli(
    own: Settings,
    stream: EventStream,
    redis: Redis,
    consumer_env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    start_consumer(consumer_env, tmp_path / "consumer.log", processes)
    poison = await emit(stream, "test.poison", "u1")
    await emit(stream, "connection.deleted", "u2")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tokenlife.cli", "events", "dead-letters",
                               *args], env=consumer_env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    async def dead_lettered() -> bool:
        return poison in cli("list", "test-app", "--json").stdout

    await wait_until(dead_lettered, timeout=30, what="the dead letter")
    [letter] = json.loads(cli("list", "test-app", "--json").stdout)
    assert (letter["entry_id"], letter["deliveries"]) == (poison, 3)
    assert letter["error"] == "RuntimeError: this handler fails for every event (test.poison)"
    assert await listed(redis, app_key(own.key_prefix, "deleted")) == ["google/u2"]
    assert "dead-lettered in group test-app after 3 deliveries" in (
        tmp_path / "consumer.log").read_text()  # fmt: skip

    replayed = cli("replay", "tests.fakes.app_events:handlers", letter["letter_id"], "--json")
    assert replayed.returncode == 5, replayed.stderr
    assert json.loads(replayed.stdout)[0]["outcome"] == "failed"
    missing = cli("replay", "tests.fakes.app_events:handlers", "1-0/0")
    assert missing.returncode == 3, missing.stderr
    assert len(json.loads(cli("list", "test-app", "--json").stdout)) == 1


async def test_a_redis_restart_is_waited_out_and_nothing_is_lost(
    own: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path)
    server.start()
    private = own.model_copy(update={"redis_url": server.url})
    client = Redis.from_url(server.url, decode_responses=True)
    stream = EventStream(client, Keys(private.key_prefix, private.redis_shards), 1000)
    got: list[str] = []
    handlers = EventHandlers("app", {"*": lambda e: got.append(str(e.connection_id))}, start="0")
    try:
        async with consuming(handlers, private):
            await emit(stream, "connection.authorized", "before")
            await wait_until(holds(lambda: got == ["before"]), timeout=10, what="before")
            server.kill()
            await client.aclose()
            server.start()  # the AOF kept the stream and the group
            client = Redis.from_url(server.url, decode_responses=True)
            stream = EventStream(client, Keys(private.key_prefix, private.redis_shards), 1000)
            await emit(stream, "connection.deleted", "after")
            await wait_until(holds(lambda: got == ["before", "after"]), timeout=30, what="after")
    finally:
        await client.aclose()
        server.kill()

    assert "event handlers: Redis unavailable (ConnectionError)" in caplog.text


async def test_a_redis_restart_without_persistence_is_waited_out_and_the_group_recreated(
    own: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path, "--appendonly", "no")
    server.start()
    private = own.model_copy(update={"redis_url": server.url})
    keys = Keys(private.key_prefix, private.redis_shards)
    client = Redis.from_url(server.url, decode_responses=True)
    got: list[str] = []
    handlers = EventHandlers("app", {"*": lambda e: got.append(str(e.connection_id))}, start="0")
    try:
        async with consuming(handlers, private):
            await emit(EventStream(client, keys, 1000), "connection.authorized", "before")
            await wait_until(holds(lambda: got == ["before"]), timeout=10, what="before")
            server.kill()
            await client.aclose()
            server.start()  # empty: the streams and the group are gone
            client = Redis.from_url(server.url, decode_responses=True)
            await emit(EventStream(client, keys, 1000), "connection.deleted", "after")
            await wait_until(holds(lambda: got == ["before", "after"]), timeout=30, what="after")
    finally:
        await client.aclose()
        server.kill()

    assert "event handlers: consumer group app lost, recreated" in caplog.text


@pytest.mark.parametrize(
    ("target", "code", "said"),
    [
        ("tests.fakes.app_celery:app", 2, "is not a tokenlife.event_handlers.EventHandlers"),
        ("tests.fakes.app_events", 2, "is not MODULE:ATTRIBUTE"),
        ("tests.fakes.no_such_module:handlers", 1, "cannot import tests.fakes.no_such_module"),
    ],
)
def test_consume_refuses_a_target_that_is_not_event_handlers(
    own: Settings, target: str, code: int, said: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "events", "consume", target],
        env=worker_environment(own), capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == code, done.stderr
    assert said in done.stderr
