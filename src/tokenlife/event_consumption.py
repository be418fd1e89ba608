"""The loop of `EventHandlers.consume`: one consumer of a group, one event at a time.

Each turn takes, in this order: this consumer's own pending entries (what a previous run
of the same name left unacknowledged: it was stopped, killed or its handler failed), then
entries idle in the group for `claim_idle_seconds` (XAUTOCLAIM: a dead consumer's, or this
one's failures), then new ones. An event is acknowledged once every handler for it
succeeded; one that raised leaves it pending, so it comes back by the claim, and each
delivery counts (XPENDING's delivery count, kept by Redis across restarts and consumers).
Past `max_deliveries` it goes to the dead letters with the error, in one step with the
acknowledgement. While an event is handled the entries of its batch are kept from other
consumers' claims (XCLAIM JUSTID every third of the idle time).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable
from concurrent.futures import Executor
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.event_consumer import StreamEntry
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.pending_events import PendingEvents
from tokenlife.models import Event

if TYPE_CHECKING:
    from tokenlife.event_handlers import EventHandlers, Handler

log = logging.getLogger("tokenlife.event_handlers")
T = TypeVar("T")

# Waits after Redis failed a read: it is restarting, or the network is; nothing is lost
# meanwhile (the events wait in the streams).
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
        executor: Executor,
        *,
        block_ms: int,
        count: int,
    ) -> None:
        self._handlers = handlers
        self._consumer = consumer
        self._executor = executor
        self._pending = PendingEvents(redis, keys, handlers.group, consumer, block_ms=block_ms,
                                      count=count)  # fmt: skip
        self._idle_ms = max(1, int(handlers.claim_idle_seconds * 1000))
        self._held: set[str] = set()  # entry ids of the batch in hand, not yet done

    async def run(self, start: str, stop: asyncio.Event) -> None:
        next_claim = 0.0
        failures = 0
        started = False
        while not stop.is_set():
            try:
                if not started:
                    await self._pending.create_group(start)
                    log.info("event handlers: consumer %s of group %s started",
                             self._consumer, self._handlers.group)  # fmt: skip
                    started = True
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
                pause = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                failures += 1
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
        deliveries = await self._pending.deliveries([entry.entry_id for entry in work])
        self._held = {entry.entry_id for entry in work}
        keeper = asyncio.ensure_future(self._keep_held())
        try:
            for entry in work:
                if stop.is_set():
                    return  # the rest stay pending here: the next run takes them first
                owner, delivered = deliveries.get(entry.entry_id, (None, 0))
                if owner == self._consumer:  # else acknowledged or claimed meanwhile
                    await self._handle(entry, delivered)
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
        failure = await call_all(self._handlers, entry, self._executor)
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
            with suppress(RedisError):  # the next turn finds Redis back, or says so
                await self._pending.keep(list(self._held))


async def call_all(
    handlers: EventHandlers, entry: StreamEntry, executor: Executor
) -> tuple[str, str] | None:
    """Run every handler for the entry's type, in order; the first to raise stops it:
    (the handler, its error) then, else None."""
    for index, handler in enumerate(handlers.handlers_for(entry.type)):
        try:
            await _call(handler, index, entry, handlers.group, executor)
        except Exception as exc:
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:_ERROR_CHARACTERS]
            return describe(handler), error
    return None


async def _call(
    handler: Handler, index: int, entry: StreamEntry, group: str, executor: Executor
) -> None:
    payload = {"id": entry.entry_id, "type": entry.type,
               "occurred_at": entry.data.get("occurred_at"), "data": entry.data}  # fmt: skip
    loop = asyncio.get_running_loop()
    if is_signature(handler):
        # Sent when the broker took it (Celery's publish retries included); the task gets
        # the event as the HTTP API gives it (tokenlife.models.Event.from_json reads it).
        signature: Any = handler
        name = f"{group}/{entry.data.get('event_id', entry.entry_id)}/{index}"
        task_id = str(uuid.uuid5(_TASK_IDS, name))
        await loop.run_in_executor(
            executor, lambda: signature.apply_async(args=(payload,), task_id=task_id)
        )
        return
    event = Event.from_json(payload)
    if is_async(handler):
        outcome = handler(event)
    else:
        outcome = await loop.run_in_executor(executor, handler, event)
    if inspect.isawaitable(outcome):
        await outcome


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
