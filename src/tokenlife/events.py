"""Following tokenlife's events from an app. Every type and field is in docs/events.md.

    async with tokenlife.events.subscribe("billing", "billing-1") as stream:
        async for event in stream:
            handle(event.type, event.data)
            await event.ack()

`subscribe` reads as one consumer of a Redis consumer group: each event goes to one
consumer of the group, and stays pending until acknowledged. `follow` reads without a
group, as `tokenlife events tail` does. `tokenlife.event_handlers` runs handlers per event
type on a group, with redelivery, dead letters and a graceful stop.
"""

from __future__ import annotations

import re
import socket
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from redis.asyncio import Redis

from tokenlife.adapters.event_consumer import EventConsumer, EventFollower, StreamEntry
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import connect
from tokenlife.errors import UsageError
from tokenlife.settings import Settings, load_settings

__all__ = ["ReceivedEvent", "StreamEntry", "Subscription", "follow", "subscribe", "summary_line"]

# "$" (after the newest entry), or a stream entry id: milliseconds, optionally "-sequence",
# optionally "/shard" as tokenlife's readers hand them out (adapters/event_consumer.py).
_POSITION = re.compile(r"\$|\d+(-\d+)?(/\d+)?")
_CONNECT_TIMEOUT_SECONDS = 10.0
# TCP keepalive of the event readers: first probe after 30 s idle, then every 10 s, given
# up after 3 unanswered (where the platform has these options; macOS lacks TCP_KEEPIDLE).
_KEEPALIVE = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    entry_id: str
    type: str
    data: dict[str, Any]
    _subscription: Subscription = field(repr=False, compare=False)

    async def ack(self) -> None:
        """Mark the event handled: the group won't deliver it again."""
        await self._subscription.ack(self.entry_id)


class Subscription:
    """An async iterator of `ReceivedEvent`s; use `async with` (or `aclose()`) to close it.

    It first delivers this consumer's pending events (delivered before, never
    acknowledged), then new ones. Events not acknowledged come back on the next
    subscription of the same group and consumer, not in this one.
    """

    def __init__(self, redis: Redis, consumer: EventConsumer, start: str) -> None:
        self._redis = redis
        self._consumer = consumer
        self._start = start
        self._group_ready = False
        self._buffer: deque[StreamEntry] = deque()

    async def __aenter__(self) -> Subscription:
        await self._create_group()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ReceivedEvent:
        await self._create_group()
        while not self._buffer:
            self._buffer.extend(await self._consumer.read())
        entry = self._buffer.popleft()
        return ReceivedEvent(entry.entry_id, entry.type, entry.data, self)

    async def ack(self, *entry_ids: str) -> None:
        """Acknowledge events by entry id (what `ReceivedEvent.ack` does, for many at once)."""
        await self._consumer.ack(*entry_ids)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _create_group(self) -> None:
        # In `__aenter__`, so that events published once the `async with` is entered are
        # delivered even before the first iteration.
        if not self._group_ready:
            await self._consumer.create_group(self._start)
            self._group_ready = True


def subscribe(
    group: str,
    consumer: str,
    *,
    settings: Settings | None = None,
    block_ms: int = 5000,
    count: int = 10,
    start: str = "$",
) -> Subscription:
    """Events of `{prefix}:events` for `consumer` in consumer group `group`.

    The group is created when missing, at `start`: "$" for events from now on, "0" for
    every event still in the stream, or an entry id. `block_ms` is how long one read
    waits for new events; `count` is how many one read fetches at most.
    """
    if not group or not consumer:
        raise UsageError("group and consumer must be non-empty names")
    check_position("start", start)
    check_read_size(block_ms, count)
    settings = settings or load_settings()
    redis = reader_client(settings)
    reader = EventConsumer(
        redis,
        Keys(settings.key_prefix, settings.redis_shards),
        group,
        consumer,
        block_ms=block_ms,
        count=count,
    )
    return Subscription(redis, reader, start)


async def follow(
    *,
    settings: Settings | None = None,
    since: str = "$",
    types: tuple[str, ...] = (),
    block_ms: int = 5000,
    count: int = 100,
) -> AsyncGenerator[StreamEntry, None]:
    """Every event after entry id `since` ("0": from the beginning; "$": only new ones),
    in stream order, without a consumer group. `types` keeps only events whose type starts
    with one of these prefixes. Close it with `contextlib.aclosing`."""
    check_position("since", since)
    check_read_size(block_ms, count)
    settings = settings or load_settings()
    redis = reader_client(settings)
    try:
        follower = EventFollower(
            redis,
            Keys(settings.key_prefix, settings.redis_shards),
            since=since,
            block_ms=block_ms,
            count=count,
        )
        while True:
            for entry in await follower.read():
                if not types or entry.type.startswith(types):
                    yield entry
    finally:
        await redis.aclose()


def summary_line(type_: str, data: Mapping[str, Any]) -> str:
    """One line for a person: time, type, integration/connection, then the key facts."""
    where = str(data.get("integration", "-"))
    if data.get("connection_id") is not None:
        where += f"/{data['connection_id']}"
    parts = [str(data.get("occurred_at", "-")), type_, where]
    parts += [
        f"{name}={data[name]}"
        for name in ("status", "verdict", "severity", "error")
        if data.get(name) is not None
    ]
    message = data.get("message") or data.get("error_description")
    if message:
        parts.append(str(message))
    fix = _first_fix(data)
    if fix:
        parts.append(f"fix: {fix}")
    # A provider's error_description may hold line breaks; the line must stay one line.
    return "  ".join(" ".join(str(part).split()) for part in parts)


def _first_fix(data: Mapping[str, Any]) -> str | None:
    diagnosis = data.get("diagnosis")
    if isinstance(diagnosis, list) and diagnosis and isinstance(diagnosis[0], dict):
        fix = diagnosis[0].get("fix")
        return str(fix) if fix else None
    fix = data.get("fix")  # alert.configuration carries its fix directly
    return str(fix) if fix else None


def reader_client(settings: Settings) -> Redis:
    """A client for long blocking reads of the event streams."""
    # No socket_timeout: with one, redis-py sends each command under asyncio.wait_for,
    # which on Python 3.11 drops a cancellation that arrives as the send completes
    # (CPython gh-86296), so a task reading events could not be cancelled. A blocking
    # read answers every block_ms anyway, and TCP keepalive notices a peer that is gone
    # (a failover, a cut network) within about a minute, blocked read or ack alike, not
    # after the OS default of two hours.
    return connect(
        settings.redis_url,
        socket_timeout=None,
        socket_connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        socket_keepalive=True,
        socket_keepalive_options=_KEEPALIVE,
    )


def check_position(name: str, position: str) -> None:
    if not _POSITION.fullmatch(position):
        raise UsageError(
            f'{name} must be "$" or a stream entry id such as 0, 1700000000000-0 or '
            "1700000000000-0/3 (as tokenlife hands them out)"
        )


def check_read_size(block_ms: int, count: int) -> None:
    if block_ms < 1 or count < 1:
        raise UsageError("block_ms and count must be at least 1")
