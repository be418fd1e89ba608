"""The loop of `EventHandlers.consume`: one consumer of a group, one event at a time.

Each turn takes, in this order: this consumer's own pending entries (what a previous run
of the same name left unacknowledged: it was stopped, killed or its handler failed), then
entries idle in the group for `claim_idle_seconds` (XAUTOCLAIM: a dead consumer's, or this
one's failures), then new ones. An event is acknowledged once every handler for it
succeeded; one that raised leaves it pending, so it comes back by the claim, and each
delivery counts (XPENDING's delivery count, kept by Redis across restarts and consumers).
Past `max_deliveries` it goes to the dead letters with the error, in one step with the
acknowledgement. A handler that runs past `handler_timeout_seconds` is given up and counts
as a failure (a plain one's thread is abandoned: Python can't stop a thread).

While an event is handled the entries of its batch are kept from other consumers' claims
(every third of the idle time, and only those this consumer still holds: keep_events.lua),
until the handlers' time is up. Right before its handlers run, each entry is checked to be
still this consumer's, in the same step: an entry another consumer claimed meanwhile (this
process stalled past the idle time) is that consumer's to handle.

A group Redis lost (NOGROUP: restarted without persistence, failed over, flushed) is
created again after the newest entry this process acknowledged on each shard.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.event_consumer import StreamEntry, group_lost
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.pending_events import PendingEvents
from tokenlife.models import Event

if TYPE_CHECKING:
    from tokenlife.event_handlers import EventHandlers, Handler

log = logging.getLogger("tokenlife.event_handlers")
T = TypeVar("T")

# Waits after Redis failed a read: it is restarting, or the network is; the events wait in
# the streams meanwhile.
_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
# An error kept with a dead letter and logged is cut here: it is the app's exception text.
_ERROR_CHARACTERS = 500
# Task ids of the Celery signatures a handler sends: the same event and handler give the
# same id on every delivery, so the app's task can tell a repeat.
_TASK_IDS = uuid.UUID("0d6f2b36-8a53-4d8e-9a0e-3f5c1b7e2a41")


class Consumption:
    def __init__(
        self,
        handlers: EventHandlers,
        redis: Redis,
        keys: Keys,
        consumer: str,
        threads: HandlerThread,
        *,
        block_ms: int,
        count: int,
    ) -> None:
        self._handlers = handlers
        self._consumer = consumer
        self._threads = threads
        self._pending = PendingEvents(redis, keys, handlers.group, consumer, block_ms=block_ms,
                                      count=count)  # fmt: skip
        self._idle_ms = max(1, int(handlers.claim_idle_seconds * 1000))
        self._held: set[str] = set()  # entry ids of the batch in hand, not yet done
        self._keep_until = 0.0  # monotonic time when the handlers in flight are given up

    async def run(self, start: str, stop: asyncio.Event) -> None:
        next_claim = 0.0
        failures = 0
        started = lost = False
        while not stop.is_set():
            try:
                if not started:
                    await self._pending.create_group(start)
                    log.info("event handlers: consumer %s of group %s started",
                             self._consumer, self._handlers.group)  # fmt: skip
                    started = True
                elif lost:
                    await self._pending.recreate_group()
                    log.warning("event handlers: consumer group %s lost, recreated after the "
                                "newest event consumer %s acknowledged on each shard",
                                self._handlers.group, self._consumer)  # fmt: skip
                    lost = False
                batch = await self._pending.own_pending()
                if not batch and time.monotonic() >= next_claim:
                    batch = await self._pending.claim_idle(self._idle_ms)
                    # Something claimed: there may be more, so claim again next turn.
                    if not batch:
                        next_claim = time.monotonic() + self._handlers.claim_idle_seconds / 2
                if not batch:
                    read = await _unless_stopped(self._pending.read_new(), stop)
                    batch = read or []
                await self._handle_batch(batch, stop)
                failures = 0
            except RedisError as exc:
                failures += 1
                if started and group_lost(exc):
                    lost = True
                    if failures == 1:
                        continue  # at once; lost again right after, it waits as below
                pause = _RETRY_SECONDS[min(failures - 1, len(_RETRY_SECONDS) - 1)]
                log.warning("event handlers: Redis unavailable (%s); trying again in %g s",
                            type(exc).__name__, pause)  # fmt: skip
                await _unless_stopped(asyncio.sleep(pause), stop)
        log.info("event handlers: consumer %s stopped", self._consumer)

    async def _handle_batch(self, batch: list[StreamEntry], stop: asyncio.Event) -> None:
        work = [entry for entry in batch if self._handlers.handlers_for(entry.type)]
        wanted = {entry.entry_id for entry in work}
        # An event no handler wants is done: acknowledged at once, a batch in one step.
        await self._pending.ack(e.entry_id for e in batch if e.entry_id not in wanted)
        if not work:
            return
        self._held = {entry.entry_id for entry in work}
        self._keep_until = time.monotonic() + self._handlers.claim_idle_seconds
        keeper = asyncio.ensure_future(self._keep_held())
        try:
            for entry in work:
                if stop.is_set():
                    return  # the rest stay pending here: the next run takes them first
                # Still this consumer's (else acknowledged, or claimed by another after this
                # process stalled), and kept for a full idle time more, in one step.
                kept = await self._pending.keep([entry.entry_id])
                if entry.entry_id in kept:
                    await self._handle(entry, kept[entry.entry_id])
                self._held.discard(entry.entry_id)
        finally:
            keeper.cancel()
            with suppress(asyncio.CancelledError):
                await keeper

    async def _handle(self, entry: StreamEntry, delivered: int) -> None:
        limit = self._handlers.max_deliveries
        if delivered > limit:
            # Delivered again and again and never acknowledged, with no handler failing
            # for it: a handler that stops the process. Not tried once more.
            await self._dead_letter(entry, "-", f"delivered {delivered} times and never "
                                    "acknowledged: the process stopped while handling it",
                                    delivered)  # fmt: skip
            return
        handlers = len(self._handlers.handlers_for(entry.type))
        self._keep_until = time.monotonic() + handlers * self._handlers.handler_timeout_seconds
        failure = await call_all(self._handlers, entry, self._threads)
        if failure is None:
            await self._pending.ack([entry.entry_id])
            return
        handler, error = failure
        if delivered >= limit:
            await self._dead_letter(entry, handler, error, delivered)
            return
        log.warning(
            "event handlers: %s failed on %s %s (delivery %d of %d; tried again after %g s "
            "unacknowledged): %s", handler, entry.type, entry.entry_id, delivered, limit,
            self._handlers.claim_idle_seconds, error,
        )  # fmt: skip

    async def _dead_letter(self, entry: StreamEntry, handler: str, error: str, n: int) -> None:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        await self._pending.dead_letter(entry, handler=handler, error=error, deliveries=n,
                                        now_iso=now)  # fmt: skip
        log.error("event handlers: %s %s dead-lettered in group %s after %d deliveries "
                  "(%s: %s)", entry.type, entry.entry_id, self._handlers.group, n, handler,
                  error)  # fmt: skip

    async def _keep_held(self) -> None:
        every = self._handlers.claim_idle_seconds / 3
        while True:
            await asyncio.sleep(every)
            if time.monotonic() > self._keep_until:
                continue  # a handler overran its time (or the loop stalled): not kept
            with suppress(RedisError):  # the next turn finds Redis back, or says so
                kept = await self._pending.keep(list(self._held))
                self._held.intersection_update(kept)


async def call_all(
    handlers: EventHandlers, entry: StreamEntry, threads: HandlerThread
) -> tuple[str, str] | None:
    """Run every handler for the entry's type, in order, each within the handlers'
    `handler_timeout_seconds`; the first to raise or overrun stops it: (the handler, its
    error) then, else None."""
    seconds = handlers.handler_timeout_seconds
    for index, handler in enumerate(handlers.handlers_for(entry.type)):
        limit = asyncio.timeout(seconds)
        try:
            async with limit:
                await _call(handler, index, entry, handlers.group, threads)
        except Exception as exc:
            if limit.expired():
                log.error("event handlers: %s on %s %s ran longer than "
                          "handler_timeout_seconds (%g s): given up, counted as a failure%s",
                          describe(handler), entry.type, entry.entry_id, seconds,
                          "" if is_async(handler) else "; its thread is left to finish, "
                          "a new one runs the next handlers")  # fmt: skip
                return describe(handler), f"TimeoutError: ran longer than {seconds:g} s"
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:_ERROR_CHARACTERS]
            return describe(handler), error
    return None


async def _call(
    handler: Handler, index: int, entry: StreamEntry, group: str, threads: HandlerThread
) -> None:
    payload = {"id": entry.entry_id, "type": entry.type,
               "occurred_at": entry.data.get("occurred_at"), "data": entry.data}  # fmt: skip
    if is_signature(handler):
        # Sent when the broker took it (Celery's publish retries included); the task gets
        # the event as the HTTP API gives it (tokenlife.models.Event.from_json reads it).
        signature: Any = handler
        task_id = celery_task_id(group, entry, index)
        await threads.run(lambda: signature.apply_async(args=(payload,), task_id=task_id))
        return
    event = Event.from_json(payload)
    if is_async(handler):
        outcome = handler(event)
    else:
        outcome = await threads.run(lambda: handler(event))
    if inspect.isawaitable(outcome):
        await outcome


def celery_task_id(group: str, entry: StreamEntry, index: int) -> str:
    """The task id of the signature at `index` for an event: the same on every delivery."""
    name = f"{group}/{entry.data.get('event_id', entry.entry_id)}/{index}"
    return str(uuid.uuid5(_TASK_IDS, name))


class HandlerThread:
    """Runs plain handlers and Celery sends one at a time, in a thread off the event loop.
    One given up (a timeout, a cancellation) keeps running in its thread, which is
    abandoned: a new thread runs the next. Daemon threads, so a hung one does not keep the
    process from exiting."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs = self._start()

    async def run(self, work: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._jobs.put((future, work))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # running (or just done): not stopped by this
                self._jobs.put(None)  # the old thread ends once `work` returns, if ever
                self._jobs = self._start()
            raise

    def close(self) -> None:
        self._jobs.put(None)

    def _start(self) -> queue.SimpleQueue[Any]:
        jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=_work, args=(jobs,), name=self._name, daemon=True).start()
        return jobs


def _work(jobs: queue.SimpleQueue[Any]) -> None:
    while (job := jobs.get()) is not None:
        future, work = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting loop, as an executor does
            future.set_exception(exc)
        else:
            future.set_result(result)


def describe(handler: Handler) -> str:
    if is_signature(handler):
        signature: Any = handler
        return f"task {signature.get('task', '?')}"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{getattr(handler, '__module__', '?')}.{name}"


def is_signature(handler: object) -> bool:
    """A Celery signature (told by what it can do: nothing here imports Celery). Checked
    before `callable`: a signature is callable too (it runs the task in this process)."""
    return callable(getattr(handler, "apply_async", None)) and hasattr(handler, "options")


def is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None when `stop` is set first (then `work` is cancelled; a
    read cut short leaves what Redis had handed over pending, for the next run)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this coroutine is cancelled: nothing is left running
        stopped.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError, RedisError):
                await task
    return None if task.cancelled() else task.result()
