"""`events()` and `follow_events()` of both clients against a stand-in for GET /api/events:
a real HTTP server on 127.0.0.1 that answers the pages a test gives it, in order, and
records what each request asked for. (The endpoint itself, with real events, is
tests/e2e/test_client.py's and tests/e2e/test_api_events.py's.)"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support import wait_until
from tokenlife.client import AsyncClient, Client, Event, EventPage
from tokenlife.errors import EventsTrimmedError, UsageError

KEY = "events-test-key-0123456789"


def event(n: int) -> dict[str, Any]:
    return {"id": f"{n}-0/0", "type": "connection.authorized",
            "occurred_at": "2027-01-15T14:05:00Z",
            "data": {"integration": "g", "connection_id": f"u{n}"}}  # fmt: skip


class Feed:
    """Answers the pages it was given, one a request; asked for more, holds the request
    for its `wait` (unless `instant`: a server with a short timeout, or shutting down) and
    answers an empty page."""

    def __init__(self, *pages: dict[str, Any], instant: bool = False) -> None:
        self.pages = list(pages)
        self.instant = instant
        self.asked: list[dict[str, str]] = []

    async def answer(self, request: web.Request) -> web.Response:
        self.asked.append(dict(request.query))
        if self.pages:
            return web.json_response(self.pages.pop(0))
        if not self.instant:
            await asyncio.sleep(float(request.query.get("wait", "0")))
        return web.json_response({"events": [], "next_after": request.query.get("after", "")})


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(feed: Feed) -> str:
        app = web.Application()
        app.router.add_get("/api/events", feed.answer)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    for server in servers:
        await server.close()


async def first(kind: str, base_url: str, count: int, **options: Any) -> list[Event]:
    """The first `count` events `follow_events(**options)` yields, from either client."""
    timeout = options.pop("timeout", 10)
    if kind == "sync":

        def read() -> list[Event]:
            with Client(base_url, KEY, timeout=timeout) as client:
                return list(itertools.islice(client.follow_events(**options), count))

        return await asyncio.to_thread(read)
    found: list[Event] = []
    async with AsyncClient(base_url, KEY, timeout=timeout) as client:
        async for item in client.follow_events(**options):
            found.append(item)
            if len(found) == count:
                break
    return found


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_pages_are_followed_from_position_to_position(kind: str, serve: Any) -> None:
    feed = Feed(
        {"events": [event(1), event(2)], "next_after": "2-0/0"},
        {"events": [], "next_after": "5-0/1"},  # moved past events this key may not see
        {"events": [event(6)], "next_after": "6-0/0"},
    )
    base_url = await serve(feed)
    found = await first(kind, base_url, 3, after="0", wait=7, limit=50,
                        types=["connection.authorized", "alert."])  # fmt: skip
    assert [e.id for e in found] == ["1-0/0", "2-0/0", "6-0/0"]
    common = {"wait": "7", "limit": "50", "types": "connection.authorized,alert."}
    assert feed.asked == [{**common, "after": after} for after in ("0", "2-0/0", "5-0/1")]


async def test_without_a_position_it_starts_after_the_newest(kind: str, serve: Any) -> None:
    feed = Feed({"events": [event(9)], "next_after": "9-0/0"})
    found = await first(kind, await serve(feed), 1)
    assert [e.id for e in found] == ["9-0/0"]
    assert feed.asked == [{"wait": "30"}]  # no `after`: only events still to come


async def test_events_lost_to_trimming_are_an_error_unless_handled(kind: str, serve: Any) -> None:
    gap = {"events": [event(40)], "next_after": "40-0/0", "gap": True}
    with pytest.raises(EventsTrimmedError) as raised:
        await first(kind, await serve(Feed(gap)), 1, after="3-0/0")
    assert raised.value.after == "3-0/0"
    assert raised.value.page == EventPage.from_json(gap) and raised.value.page.gap

    seen: list[EventPage] = []
    feed = Feed(gap, {"events": [event(41)], "next_after": "41-0/0"})
    found = await first(kind, await serve(feed), 2, after="3-0/0", on_gap=seen.append)
    assert [e.id for e in found] == ["40-0/0", "41-0/0"]
    assert [page.next_after for page in seen] == ["40-0/0"]


async def test_a_long_poll_waits_longer_than_the_timeout(kind: str, serve: Any) -> None:
    # The server holds the request for `wait`; the read timeout adds it to its own.
    feed = Feed()
    base_url = await serve(feed)
    if kind == "sync":
        with Client(base_url, KEY, timeout=0.3) as client:
            page = await asyncio.to_thread(client.events, "7-0/0", wait=0.6)
    else:
        async with AsyncClient(base_url, KEY, timeout=0.3) as aclient:
            page = await aclient.events("7-0/0", wait=0.6)
    assert page == EventPage(events=(), next_after="7-0/0", gap=False)


async def test_following_without_a_wait_is_refused_at_once() -> None:
    # At the call, not at the first step of the iteration.
    with Client("http://127.0.0.1:9", KEY) as client, pytest.raises(UsageError, match="wait"):
        client.follow_events(wait=0)
    async with AsyncClient("http://127.0.0.1:9", KEY) as aclient:
        with pytest.raises(UsageError, match="wait"):
            aclient.follow_events(wait=0)


async def pages_of(kind: str, base_url: str, count: int, **options: Any) -> list[EventPage]:
    """The first `count` pages `follow_pages(**options)` yields, from either client."""
    if kind == "sync":

        def read() -> list[EventPage]:
            with Client(base_url, KEY) as client:
                return list(itertools.islice(client.follow_pages(**options), count))

        return await asyncio.to_thread(read)
    found: list[EventPage] = []
    async with AsyncClient(base_url, KEY) as client:
        async for page in client.follow_pages(**options):
            found.append(page)
            if len(found) == count:
                break
    return found


async def test_pages_are_given_empty_ones_too_so_a_reader_can_save_where_it_is(
    kind: str, serve: Any
) -> None:
    feed = Feed(
        {"events": [event(1)], "next_after": "1-0/0"},
        {"events": [], "next_after": "8-0/0"},  # seven events for other keys or types
        {"events": [event(9)], "next_after": "9-0/0"},
    )
    pages = await pages_of(kind, await serve(feed), 3, after="0", wait=5, types="x.")
    assert [p.next_after for p in pages] == ["1-0/0", "8-0/0", "9-0/0"]
    assert [[e.id for e in p.events] for p in pages] == [["1-0/0"], [], ["9-0/0"]]


async def test_empty_pages_answered_at_once_are_not_asked_for_in_a_tight_loop(
    kind: str, serve: Any
) -> None:
    # A server that answers every long poll at once, with nothing new: at most one
    # request per min(wait, 1 s). Without the pause, 6 pages took a few milliseconds.
    feed = Feed(instant=True)
    started = time.monotonic()
    pages = await pages_of(kind, await serve(feed), 6, after="5-0/0", wait=0.2)
    took = time.monotonic() - started
    assert [p.next_after for p in pages] == ["5-0/0"] * 6
    assert took >= 5 * 0.2 * 0.9, took  # 5 pauses between 6 pages (timers run a bit early)
    assert len(feed.asked) == 6


async def test_a_page_that_moves_is_followed_at_once(kind: str, serve: Any) -> None:
    # An empty page that moved the position was a page of events for others: no pause.
    feed = Feed(*({"events": [], "next_after": f"{n}-0/0"} for n in range(1, 6)))
    started = time.monotonic()
    await pages_of(kind, await serve(feed), 5, after="0", wait=10)
    assert time.monotonic() - started < 5, "paused after pages that moved"


async def test_a_sync_reader_stops_between_pages_when_told(serve: Any) -> None:
    feed = Feed({"events": [event(1)], "next_after": "1-0/0"})
    base_url = await serve(feed)
    stop = threading.Event()

    def read() -> list[Event]:
        found = []
        with Client(base_url, KEY) as client:
            for item in client.follow_events(after="0", wait=5, stop=stop):
                found.append(item)
                stop.set()  # e.g. from a signal handler or another thread
        return found

    assert [e.id for e in await asyncio.to_thread(read)] == ["1-0/0"]
    assert len(feed.asked) == 1


async def test_a_client_closed_while_following_says_so(kind: str, serve: Any) -> None:
    feed = Feed({"events": [event(1)], "next_after": "1-0/0"})
    base_url = await serve(feed)
    if kind == "sync":

        def read() -> None:
            client = Client(base_url, KEY)
            for _ in client.follow_events(after="0", wait=5):
                client.close()

        with pytest.raises(UsageError, match="closed"):
            await asyncio.to_thread(read)
    else:
        aclient = AsyncClient(base_url, KEY)
        with pytest.raises(UsageError, match="closed"):
            async for _ in aclient.follow_events(after="0", wait=5):
                await aclient.aclose()


async def test_an_async_gap_handler_is_awaited(serve: Any) -> None:
    gap = {"events": [event(40)], "next_after": "40-0/0", "gap": True}
    handled: list[str] = []

    async def resync(page: EventPage) -> None:
        await asyncio.sleep(0)
        handled.append(page.next_after)

    found = await first("async", await serve(Feed(gap)), 1, after="3-0/0", on_gap=resync)
    assert [e.id for e in found] == ["40-0/0"] and handled == ["40-0/0"]


async def test_a_sync_client_closed_under_a_long_poll_says_so(serve: Any) -> None:
    feed = Feed()  # holds the request for its wait
    client = Client(await serve(feed), KEY)
    asking = asyncio.create_task(asyncio.to_thread(client.events, "7-0/0", wait=3))

    async def asked() -> bool:
        return bool(feed.asked)

    await wait_until(asked, timeout=5, what="the long poll to reach the feed")
    await asyncio.to_thread(client.close)  # e.g. a shutdown hook in another thread
    with pytest.raises(UsageError, match="closed") as raised:
        await asking
    assert raised.value.__context__ is None
