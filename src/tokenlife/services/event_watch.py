"""Long-polls of the event streams (GET /api/events?wait=...) that hold no Redis connection
while they wait.

One task per process follows the streams with the EventFollower on a Redis client of its
own (a blocking XREAD on one Redis; a read every 0.2 s on a Cluster) and counts
`generation` up whenever it reads entries. A waiting request notes the generation, reads
its page from the shared pool (a few round trips), and when that is empty sleeps until the
generation moves or its time is up. So a thousand waiting requests cost one blocked Redis
client, not a thousand pooled connections (TOKENLIFE_REDIS_MAX_CONNECTIONS, 64 by default,
that every other request needs too).

No wakeup is lost: the task starts from the newest settled entry (event_feed.py) before
any waiter notes the generation, so it reads every entry written after that; an entry
written before is either read by the page that follows, or is of the current millisecond
(`EventPage.unsettled`), and the page is read again a moment later. The task stops when
nobody has waited for LINGER_SECONDS, and is started again by the next waiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from tokenlife.adapters.event_consumer import EventFollower
from tokenlife.adapters.keys import Keys
from tokenlife.services.event_feed import Admits, EventFeed, EventPage

log = logging.getLogger(__name__)

BLOCK_MS = 5_000  # one blocking read of the task; it checks for idleness in between
READ_COUNT = 1_000
LINGER_SECONDS = 60.0  # a client that polls again at once finds the task still running
RETRY_SECONDS = 1.0  # after the task failed: waiters read their page this often meanwhile
SETTLE_SECONDS = 0.002  # an entry of the current millisecond is settled by then
RESCAN_MAX_SECONDS = 0.05  # the longest pause between reads of one waiting request


class EventWatch:
    def __init__(self, feed: EventFeed, keys: Keys, open_client: Callable[[], Redis]) -> None:
        self._feed = feed
        self._keys = keys
        self._open_client = open_client
        self._generation = 0
        self._moved = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._failed_at: float | None = None
        self.failures = 0  # times the task failed (and waiters read every RETRY_SECONDS)
        self._waiters = 0
        self._idle_since = 0.0
        self.closed = False

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def waiting(self) -> int:
        """Requests asleep in `changed` now."""
        return self._waiters

    async def generation(self) -> int:
        """The current generation, once the task follows the streams (started here if it
        doesn't, unless it failed less than RETRY_SECONDS ago)."""
        loop = asyncio.get_running_loop()
        recently_failed = (
            self._failed_at is not None and loop.time() - self._failed_at < RETRY_SECONDS
        )
        if self._task is None and not self.closed and not recently_failed:
            async with self._starting:
                if self._task is None:
                    start, _ = await self._feed.newest()
                    self._idle_since = loop.time()
                    self._task = asyncio.create_task(self._follow(start), name="event-watch")
        return self._generation

    async def changed(self, generation: int, timeout: float) -> None:
        """Wait until the generation is past `generation`, `timeout` seconds pass, or the
        watch closes; at most RETRY_SECONDS while the task is not running."""
        if self._generation != generation or self.closed:
            return
        if self._task is None:
            timeout = min(timeout, RETRY_SECONDS)
        moved = self._moved  # taken with the check above, before anything can bump it
        self._waiters += 1
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await moved.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters -= 1
            if not self._waiters:
                self._idle_since = asyncio.get_running_loop().time()

    async def close(self) -> None:
        """Wake every waiter (its request answers at once) and stop the task."""
        self.closed = True
        self._bump()
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _bump(self) -> None:
        self._generation += 1
        self._moved.set()
        self._moved = asyncio.Event()

    async def _follow(self, start: str) -> None:
        loop = asyncio.get_running_loop()
        client = self._open_client()
        try:
            follower = EventFollower(
                client, self._keys, since=start, block_ms=BLOCK_MS, count=READ_COUNT
            )
            while True:
                if await follower.read():
                    self._bump()
                if not self._waiters and loop.time() - self._idle_since > LINGER_SECONDS:
                    return
        except Exception as exc:  # waiters fall back to reading every RETRY_SECONDS
            log.warning("following the event streams for waiting requests failed: %s", exc)
            self._failed_at = loop.time()
            self.failures += 1
        finally:
            self._task = None
            self._bump()  # waiters read their page again, and meet the failure themselves
            await asyncio.shield(client.aclose())


@dataclass(frozen=True, slots=True)
class PageRequest:
    after: str  # a position (event_feed.parse_position), "0", or the newest settled entry
    limit: int
    admits: Admits
    check_gap: bool  # not from "0" (the oldest kept) nor from the newest entry
    wait: float  # seconds
    filtered: bool = True  # `admits` may refuse entries


async def next_page(feed: EventFeed, watch: EventWatch, wanted: PageRequest) -> EventPage:
    """The page after `wanted.after`; when it shows nothing, wait up to `wanted.wait`
    seconds for one that does. It also answers at once when entries were trimmed unread (a
    gap) or the page read its SCAN_LIMIT: `next_after` has moved on either way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wanted.wait
    page = await feed.page(wanted.after, wanted.limit, wanted.admits,
                           check_gap=wanted.check_gap, filtered=wanted.filtered)  # fmt: skip
    noted: int | None = None
    pause, read_at = SETTLE_SECONDS, loop.time()
    while not (page.events or page.gap or page.more or watch.closed):
        if loop.time() >= deadline:
            return page
        if noted is None:
            # The task must follow the streams before the page it is to wake is read.
            noted = await watch.generation()
        else:
            if not page.unsettled:
                await watch.changed(noted, deadline - loop.time())
                noted = await watch.generation()
            # Events this key may not see keep coming: read again less and less often.
            await asyncio.sleep(max(0.0, min(read_at + pause, deadline) - loop.time()))
            pause = min(pause * 2, RESCAN_MAX_SECONDS)
        page = await feed.page(page.next_after, wanted.limit, wanted.admits,
                               check_gap=True, filtered=wanted.filtered)  # fmt: skip
        read_at = loop.time()
    return page
