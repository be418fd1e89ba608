"""React to tokenlife's events in a process of the app's own: handlers by event type, each
event acknowledged only once they all succeeded, resumed where the last run stopped.

    handlers = EventHandlers("billing")

    @handlers.on("connection.authorized")
    async def welcome(event: Event) -> None: ...

    @handlers.on("alert.*")
    def page(event: Event) -> None: ...            # a plain function runs in a thread

    handlers.on("token.refreshed", sync_mailbox.s())  # a task of the app's own Celery

    $ tokenlife events consume billing.tokenlife_events:handlers --consumer billing-1

`EventHandlers.run()` (what the command calls) and `consume()` (a coroutine) read as one
consumer of the consumer group `group` (tokenlife.events.subscribe's); the loop is in
event_consumption.py. docs/events.md#handlers-in-a-process-of-your-own says it all.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, TypeAlias, TypeVar, overload

from tokenlife.adapters.event_consumer import StreamEntry
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.pending_events import DEAD_LETTERS_MAX_LENGTH, DeadLetter, DeadLetters
from tokenlife.errors import UsageError
from tokenlife.event_consumption import Consumption, HandlerThread, call_all, is_signature
from tokenlife.events import check_position, check_read_size, reader_client
from tokenlife.models import Event
from tokenlife.settings import Settings, load_settings

__all__ = ["DeadLetter", "Event", "EventHandlers", "Handler", "ReplayOutcome", "Replayed"]

log = logging.getLogger(__name__)

# A function of the event (async, or plain: run in a thread), or a Celery signature (sent
# with the event as its first argument). Celery ships no types, so a signature is Any.
Handler: TypeAlias = Callable[[Event], Awaitable[object] | object] | Any
H = TypeVar("H")


class ReplayOutcome(StrEnum):
    HANDLED = "handled"  # every handler succeeded: removed from the dead letters
    FAILED = "failed"  # a handler raised again: kept as it was


@dataclass(frozen=True, slots=True)
class Replayed:
    letter_id: str
    type: str
    outcome: ReplayOutcome
    error: str | None  # the handler's error, when it failed


class EventHandlers:
    """Handlers of tokenlife's events for the consumer group `group` (one per app or
    purpose: every group gets every event).

    `start` is where a group created by the first run begins: "$" (events from then on),
    "0" (every event still in the stream) or an entry id. An event whose handler raised is
    tried again once it has waited `claim_idle_seconds` unacknowledged (by this process,
    or by another of the group when this one died), up to `max_deliveries` deliveries in
    all; then it goes to the group's dead letters. A handler still running after
    `handler_timeout_seconds` is given up, and that counts as a failure. Patterns are
    globs of event types: "connection.authorized", "alert.*", "*".
    """

    def __init__(
        self,
        group: str,
        handlers: Mapping[str, Handler] | None = None,
        *,
        start: str = "$",
        max_deliveries: int = 5,
        claim_idle_seconds: float = 60.0,
        handler_timeout_seconds: float = 300.0,
    ) -> None:
        if not group:
            raise UsageError("group must be a non-empty name")
        check_position("start", start)
        if max_deliveries < 1:
            raise UsageError("max_deliveries must be at least 1")
        if not claim_idle_seconds > 0:
            raise UsageError("claim_idle_seconds must be above 0")
        if not handler_timeout_seconds > 0:
            raise UsageError("handler_timeout_seconds must be above 0")
        self.group = group
        self.start = start
        self.max_deliveries = max_deliveries
        self.claim_idle_seconds = claim_idle_seconds
        self.handler_timeout_seconds = handler_timeout_seconds
        self._routes: list[tuple[str, Handler]] = []
        for pattern, handler in (handlers or {}).items():
            self.on(pattern, handler)

    @overload
    def on(self, pattern: str) -> Callable[[H], H]: ...

    @overload
    def on(self, pattern: str, handler: H) -> H: ...

    def on(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register `handler` for the event types `pattern` matches; without `handler`, a
        decorator that registers the function it decorates (and returns it unchanged).
        An event goes to every matching handler, in the order they were registered."""
        if not pattern:
            raise UsageError("pattern must be an event type or a glob such as alert.*")
        if handler is None:

            def register(function: H) -> H:
                self.on(pattern, function)
                return function

            return register
        if not callable(handler) and not is_signature(handler):
            raise UsageError(f"a handler is a function or a Celery signature, not {handler!r}")
        self._routes.append((pattern, handler))
        return handler

    def handlers_for(self, event_type: str) -> list[Handler]:
        return [handler for pattern, handler in self._routes if fnmatchcase(event_type, pattern)]

    async def consume(
        self,
        consumer: str | None = None,
        *,
        settings: Settings | None = None,
        start: str | None = None,
        block_ms: int = 5000,
        count: int = 10,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Handle events as consumer `consumer` (default: the host name; a name that stays
        the same across restarts) until `stop` is set: the event in flight is finished and
        acknowledged, and it returns. Cancelled instead, the event in flight is left
        unacknowledged and comes back. `start` overrides the group's for a new group."""
        check_read_size(block_ms, count)
        if start is not None:
            check_position("start", start)
        settings = settings or load_settings()
        redis = reader_client(settings)
        threads = HandlerThread("tokenlife-events")
        try:
            await Consumption(
                self, redis, Keys(settings.key_prefix, settings.redis_shards),
                consumer or socket.gethostname(), threads, block_ms=block_ms, count=count,
            ).run(start or self.start, stop or asyncio.Event())  # fmt: skip
        finally:
            # A plain handler cut short by a cancellation goes on in its thread (Python
            # can't stop one); nothing waits for it here, nor does the process at exit.
            threads.close()
            await redis.aclose()

    def run(
        self, consumer: str | None = None, *, settings: Settings | None = None,
        start: str | None = None,
    ) -> None:  # fmt: skip
        """`consume()` until SIGTERM or SIGINT (Ctrl-C): the handler in flight finishes and
        its event is acknowledged, then it returns. A second signal stops at once (the
        event in flight comes back). What `tokenlife events consume` runs."""
        asyncio.run(self.consume_until_signalled(consumer, settings=settings, start=start))

    async def consume_until_signalled(
        self, consumer: str | None = None, *, settings: Settings | None = None,
        start: str | None = None,
    ) -> None:  # fmt: skip
        """`run()` as a coroutine, for a loop of the caller's (signal handlers need the main
        thread)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        consuming = asyncio.ensure_future(
            self.consume(consumer, settings=settings, start=start, stop=stop)
        )

        def on_signal(name: str) -> None:
            if stop.is_set():
                log.warning("event handlers: %s again, stopping now", name)
                consuming.cancel()
                return
            log.info("event handlers: %s, stopping once the event in flight is handled", name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            await consuming
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this coroutine was cancelled, not only the consumer by a signal
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def dead_letters(
        self, *, settings: Settings | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """The group's dead letters, newest first."""
        settings = settings or load_settings()
        redis = reader_client(settings)
        try:
            keys = Keys(settings.key_prefix, settings.redis_shards)
            return await DeadLetters(redis, keys, self.group).list(limit)
        finally:
            await redis.aclose()

    async def replay(
        self, letter_ids: Sequence[str] | None = None, *, settings: Settings | None = None
    ) -> list[Replayed]:
        """Hand dead letters (all when `letter_ids` is None) to the handlers registered now
        for their type, in this process; each one handled is removed, each one that fails
        again is kept as it is."""
        settings = settings or load_settings()
        redis = reader_client(settings)
        threads = HandlerThread("tokenlife-replay")
        try:
            keys = Keys(settings.key_prefix, settings.redis_shards)
            letters = DeadLetters(redis, keys, self.group)
            every = await letters.list(limit=DEAD_LETTERS_MAX_LENGTH * 2 * keys.shards)
            asked = set(letter_ids or ())
            chosen = [letter for letter in every if letter_ids is None or letter.letter_id in asked]
            missing = asked - {letter.letter_id for letter in chosen}
            if missing:
                raise UsageError(f"no dead letter {', '.join(sorted(missing))} in {self.group}")
            done: list[Replayed] = []
            for letter in reversed(chosen):  # oldest first, as they happened
                entry = StreamEntry(letter.entry_id, letter.type, letter.data)
                failure = await call_all(self, entry, threads)
                if failure is None:
                    await letters.remove([letter.letter_id])
                outcome = ReplayOutcome.HANDLED if failure is None else ReplayOutcome.FAILED
                error = None if failure is None else failure[1]
                done.append(Replayed(letter.letter_id, letter.type, outcome, error))
            return done
        finally:
            threads.close()
            await redis.aclose()
