"""GET /api/events over the real app and a real Redis: pages in order across the shards,
resumed with nothing skipped or repeated, filtered by key and type, long-polls that hold no
pooled connection, bad input, trimmed positions, and events that hold no token value."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.cluster_process import ClusterProcess
from tests.support import Fakes, WorkerHandle, connect, wait_until
from tests.test_event_schemas import code_types, event_schemas, problems
from tokenlife.adapters.event_consumer import order
from tokenlife.adapters.event_stream import new_event
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.services import event_watch
from tokenlife.services.event_feed import EVENT_TYPES, EventFeed
from tokenlife.services.event_watch import EventWatch, PageRequest, next_page
from tokenlife.settings import Settings
from tokenlife.web.app import create_app
from tokenlife.web.events_api import EVENTS

FULL = "events-full-key-0123456789"
LIMITED = "events-generic-key-0123456789"
# The fields of a token.refreshed after the common ones (docs/schemas/token.refreshed.schema.json).
REFRESHED = {
    "provider": "custom", "expires_at": None, "access_token_lifetime_seconds": None,
    "refresh_token_rotated": False, "next_refresh_at": None,
}  # fmt: skip


@dataclass
class Api:
    client: TestClient[Any, Any]
    runtime: Runtime

    async def page(self, key: str = FULL, **params: object) -> dict[str, Any]:
        response = await self.get(key, **params)
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body

    async def get(self, key: str = FULL, **params: object) -> Any:
        query = {name: str(value) for name, value in params.items()}
        return await self.client.get("/api/events", params=query, headers=auth(key))

    async def emit(self, integration: str, connection_id: str | None, **fields: Any) -> str:
        kind = fields.pop("type", "token.refreshed")
        extra = REFRESHED if kind == "token.refreshed" else {}
        return await self.runtime.events.emit(
            kind, integration, connection_id, time.time(), **{**extra, **fields}
        )

    async def read_until(
        self, after: str, count: int, key: str = FULL, **params: object
    ) -> tuple[list[dict[str, Any]], str]:
        """Pages from `after` until `count` events came (or a page waited a second for
        none): the events, and the position after them."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            body = await self.page(key, after=after, wait=1, **params)
            if not body["events"] and body["next_after"] == after:
                break
            found += body["events"]
            after = body["next_after"]
        return found, after


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Api]:
    runtime = await Runtime.open(await load_config(settings))
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
            yield Api(client, runtime)
    finally:
        await runtime.close()


def own(settings: Settings, **changes: Any) -> Settings:
    """The session's settings with a key prefix of this test's own: its streams hold only
    the events it emits."""
    return settings.model_copy(
        update={
            "key_prefix": f"{settings.key_prefix}-ev{uuid.uuid4().hex[:6]}",
            "api_keys": (FULL, f"{LIMITED}:generic"),
            **changes,
        }
    )


async def drop_streams(redis: Redis, api: Api) -> None:
    await redis.delete(*(api.runtime.keys.events(s) for s in api.runtime.keys.all_shards))


@pytest.fixture
async def api(settings: Settings, fakes: Fakes, redis: Redis) -> AsyncIterator[Api]:
    async with serve(own(settings)) as served:
        yield served
        await drop_streams(redis, served)


def cids(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["connection_id"] for e in events]


# -- positions and order ------------------------------------------------------------------


async def test_without_after_a_reader_gets_only_new_events_and_0_is_the_oldest(api: Api) -> None:
    before = await api.emit("google", "before")
    # The newest *settled* event: one of the current millisecond may still come.
    await wait_until(_settled(api, before), timeout=5, what="the event to settle")
    first = await api.page()
    assert first["events"] == [] and first["gap"] is False
    await api.emit("google", "after")

    new, _ = await api.read_until(first["next_after"], 1)
    assert cids(new) == ["after"]
    everything, _ = await api.read_until("0", 2)
    assert cids(everything) == ["before", "after"]
    event = everything[0]
    assert set(event) == {"id", "type", "occurred_at", "data"}
    assert event["type"] == "token.refreshed"
    assert event["occurred_at"] == event["data"]["occurred_at"]
    assert order(event["id"]) < order(everything[1]["id"])


async def test_an_empty_stream_starts_at_0_and_an_unmoved_position_comes_back_as_given(
    api: Api,
) -> None:
    assert await api.page() == {"events": [], "next_after": "0", "gap": False}
    assert (await api.page(after="1700000000000"))["next_after"] == "1700000000000"


async def test_pages_follow_every_shard_in_order_while_events_are_written(api: Api) -> None:
    """Events land in 16 shards' streams, several in one millisecond. Small pages read
    while they are written, each resumed from the last page's next_after, see every event
    once, in the merged order; one connection's events in the order they were written."""
    start = (await api.page())["next_after"]
    written: list[str] = []

    async def write(connections: range) -> None:
        # Each writer in turn through its connections: writes every few microseconds.
        for n in range(75):
            for c in connections:
                await api.emit("google", f"c{c}-{n}")
                written.append(f"c{c}-{n}")

    writer = asyncio.gather(*(write(range(w * 5, w * 5 + 5)) for w in range(8)))
    seen: list[dict[str, Any]] = []
    after, pages = start, 0
    while not writer.done():
        body = await api.page(after=after, limit=7)
        seen += body["events"]
        after, pages = body["next_after"], pages + 1
    await writer
    rest, _ = await api.read_until(after, len(written) - len(seen))
    seen += rest

    assert pages > 20, "the reader should have paged while events were written"
    got = cids(seen)
    assert len(got) == len(set(got)), "an event came twice"
    assert sorted(got) == sorted(written), f"missing: {sorted(set(written) - set(got))[:10]}"
    positions = [order(e["id"]) for e in seen]
    assert positions == sorted(positions)
    assert len({e["id"].rpartition("/")[2] for e in seen}) == 16  # every shard took part
    for connection in {cid.partition("-")[0] for cid in written}:
        mine = [int(c.partition("-")[2]) for c in got if c.partition("-")[0] == connection]
        assert mine == sorted(mine)


WRITER = """
import asyncio, json, sys, time
from redis.asyncio import Redis
from tokenlife.adapters.event_stream import EventStream, new_event
from tokenlife.adapters.keys import Keys

async def main(url, prefix, shards, fields):
    redis = Redis.from_url(url, decode_responses=True)
    stream = EventStream(redis, Keys(prefix, shards), 100_000)

    async def write(writer):
        for n in range(500):
            event = new_event("token.refreshed", "google", f"w{writer}-{n}", time.time(), **fields)
            await stream.publish(event)

    await asyncio.gather(*(write(w) for w in range(8)))
    await redis.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])))
"""


async def test_pages_see_every_event_once_while_another_process_writes(
    api: Api, settings: Settings
) -> None:
    """The service at full speed while another process (as a worker would) adds events to
    every shard, several in a millisecond: pages of seven, each read after the last, see
    every event once."""
    feed = api.client.app[EVENTS].feed
    start, _ = await feed.newest()
    prefix, keys = api.runtime.config.settings.key_prefix, api.runtime.keys
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        settings.redis_url,
        prefix,
        str(keys.shards),
        json.dumps(REFRESHED),
    )
    seen: list[str] = []
    after, pages = start, 0
    while True:
        done = writer.returncode is not None
        page = await feed.page(after, 7, lambda _: True, check_gap=False, filtered=False)
        seen += [entry.data["connection_id"] for entry in page.events]
        after, pages = page.next_after, pages + 1
        if done and not page.events and not page.unsettled:
            break
        await asyncio.sleep(0)  # lets the loop notice the writer's exit
    assert await writer.wait() == 0

    written = {f"w{w}-{n}" for w in range(8) for n in range(500)}
    assert pages > 300, "pages should have been read while the events were written"
    assert len(seen) == len(set(seen)), "an event came twice"
    missing = written - set(seen)
    assert not missing, f"{len(missing)} of {len(written)} events skipped"
    assert set(seen) == written


async def test_an_event_of_the_current_millisecond_waits_for_a_later_page(
    api: Api, redis: Redis
) -> None:
    """Two shards' streams number their entries apart, each from sequence 0 in a new
    millisecond: an entry written later in the same millisecond to a lower shard sorts
    first. Entries dated 300 ms ahead stand for the current millisecond: a page hands out
    none of them until that millisecond has passed, so a reader resuming after the first
    one it got skips neither."""
    keys = api.runtime.keys
    start = (await api.page())["next_after"]
    seconds, micros = await redis.time()
    ms = seconds * 1000 + micros // 1000 + 300

    async def put(shard: int, sequence: int, cid: str) -> str:
        data = new_event("token.refreshed", "google", cid, time.time(), **REFRESHED).data
        fields = {"type": "token.refreshed", "data": json.dumps(data)}
        await redis.xadd(keys.events(shard), fields, id=f"{ms}-{sequence}")  # type: ignore[arg-type]
        return f"{ms}-{sequence}/{shard}"

    first = await put(3, 5, "written-first")
    assert (await api.page(after=start))["events"] == []
    second = await put(1, 0, "written-second")
    assert order(second) < order(first)

    found, _ = await api.read_until(start, 2)
    assert [e["id"] for e in found] == [second, first]


async def test_resuming_from_any_event_id_skips_nothing_and_repeats_nothing(api: Api) -> None:
    start = (await api.page())["next_after"]
    for i in range(30):
        await api.emit("google", f"r{i}")
    everything, end = await api.read_until(start, 30)
    # The merged order (stream id, then shard), not the order of writing across shards.
    assert sorted(cids(everything)) == sorted(f"r{i}" for i in range(30))
    for cut in (0, 7, 15, 28):
        rest, _ = await api.read_until(everything[cut]["id"], 29 - cut)
        assert rest == everything[cut + 1 :]
    assert (await api.page(after=end))["events"] == []


# -- who sees what --------------------------------------------------------------------------


async def test_a_limited_key_sees_only_its_integrations_and_moves_past_the_rest(
    api: Api,
) -> None:
    start = (await api.page())["next_after"]
    first = await api.emit("generic", "g1")
    others = [
        await api.emit("google", "o1"),
        await api.emit("*", None, type="alert.configuration", severity="warning",
                       code="x", message="m", fix="f", source=None),
        await api.emit("google", "o2"),
    ]  # fmt: skip
    last = max([first, *others], key=order)

    full, _ = await api.read_until(start, 4)
    assert sorted(e["data"]["integration"] for e in full) == ["*", "generic", "google", "google"]
    limited, _ = await api.read_until(start, 1, key=LIMITED)
    assert cids(limited) == ["g1"]
    await wait_until(_settled(api, last), timeout=5, what="the last event to settle")
    body = await api.page(LIMITED, after=limited[0]["id"])
    # Nothing it may see, and yet the position moves past what it may not see.
    assert body["events"] == [] and body["next_after"] == last


def _settled(api: Api, entry_id: str) -> Any:
    feed = EventFeed(api.runtime.redis, api.runtime.keys, 1000)

    async def check() -> bool:
        newest, _ = await feed.newest()
        return order(newest) >= order(entry_id)

    return check


async def test_types_keeps_exact_types_and_prefixes(api: Api) -> None:
    start = (await api.page())["next_after"]
    # One connection's events: one shard, in the order written.
    await api.emit("google", "typed")
    await api.emit("google", "typed", type="connection.recovered", provider="custom",
                   failed_attempts=1, failing_since="2026-01-01T00:00:00Z")  # fmt: skip
    await api.emit("google", "typed", type="alert.refresh_failing")
    await api.emit("google", "typed", type="alert.reauthorization_required")

    def types(events: list[dict[str, Any]]) -> list[str]:
        return [e["type"] for e in events]

    found, _ = await api.read_until(start, 2, types="token.refreshed,alert.refresh_failing")
    assert types(found) == ["token.refreshed", "alert.refresh_failing"]
    found, _ = await api.read_until(start, 2, types=" alert. ")
    assert types(found) == ["alert.refresh_failing", "alert.reauthorization_required"]


# -- long polls -------------------------------------------------------------------------------


async def test_a_long_poll_answers_as_soon_as_an_event_comes(api: Api) -> None:
    start = (await api.page())["next_after"]
    began = time.monotonic()
    waiting = asyncio.create_task(api.page(after=start, wait=20))
    watch = api.client.app[EVENTS].watch
    await wait_until(_waiting(watch, 1), timeout=5, what="the request to wait")
    await api.emit("google", "news")
    body = await waiting
    assert cids(body["events"]) == ["news"]
    assert time.monotonic() - began < 5


async def test_a_long_poll_ends_on_time_and_passes_over_what_the_key_may_not_see(
    api: Api,
) -> None:
    start = (await api.page())["next_after"]
    began = time.monotonic()
    waiting = asyncio.create_task(api.page(LIMITED, after=start, wait=1.5))
    watch = api.client.app[EVENTS].watch
    await wait_until(_waiting(watch, 1), timeout=5, what="the request to wait")
    hidden = await api.emit("google", "not-yours")
    body = await waiting
    took = time.monotonic() - began
    assert body["events"] == [] and body["next_after"] == hidden
    assert 1.5 <= took < 3, took


async def test_waiting_requests_hold_no_pooled_connection(
    settings: Settings, fakes: Fakes, redis: Redis
) -> None:
    """With a pool of two connections, thirty long-polls wait while other requests are
    answered at once, and all thirty answer with the event that comes."""
    async with serve(own(settings, redis_max_connections=2)) as api:
        try:
            start = (await api.page())["next_after"]
            polls = [asyncio.create_task(api.page(after=start, wait=15)) for _ in range(30)]
            watch = api.client.app[EVENTS].watch
            await wait_until(_waiting(watch, 30), timeout=5, what="thirty requests to wait")
            for _ in range(5):
                began = time.monotonic()
                other = await api.client.get("/api/connections/google/nobody", headers=auth(FULL))
                assert other.status == 404 and time.monotonic() - began < 1
            assert not any(poll.done() for poll in polls)
            await api.emit("google", "for-all")
            answers = await asyncio.wait_for(asyncio.gather(*polls), timeout=10)
            assert all(cids(a["events"]) == ["for-all"] for a in answers)
        finally:
            await drop_streams(redis, api)


async def test_wait_is_cut_below_the_request_timeout(
    settings: Settings, fakes: Fakes, redis: Redis
) -> None:
    limited = own(settings, api_request_timeout_seconds=6.5, api_token_wait_seconds=1.0,
                  api_callback_wait_seconds=1.0)  # fmt: skip
    async with serve(limited) as api:
        began = time.monotonic()
        body = await api.page(wait=30)  # 1.5 s: 5 s before the 6.5 s timeout
        assert body["events"] == [] and 1.5 <= time.monotonic() - began < 3
        await drop_streams(redis, api)


async def test_closing_the_watch_answers_the_waiting_requests_at_once(api: Api) -> None:
    waiting = asyncio.create_task(api.page(wait=20))
    watch = api.client.app[EVENTS].watch
    await wait_until(_waiting(watch, 1), timeout=5, what="the request to wait")
    began = time.monotonic()
    await watch.close()  # what the app's on_shutdown does
    body = await asyncio.wait_for(waiting, timeout=5)
    assert body["events"] == [] and time.monotonic() - began < 2


async def test_when_the_watch_cannot_follow_a_waiting_reader_still_gets_the_event(
    settings: Settings, fakes: Fakes, redis: Redis
) -> None:
    """The service alone: a watch whose own Redis client can't connect fails, and the
    waiting page falls back to reading again every second."""
    api_settings = own(settings)
    runtime = await Runtime.open(await load_config(api_settings))
    try:
        feed = EventFeed(runtime.redis, runtime.keys, 1000)
        dead = Redis(host="127.0.0.1", port=dead_port(), retry=Retry(NoBackoff(), 0))
        watch = EventWatch(feed, runtime.keys, lambda: dead)
        start, _ = await feed.newest()
        wanted = PageRequest(start, 10, lambda entry: True, check_gap=False, wait=10)
        waiting = asyncio.create_task(next_page(feed, watch, wanted))
        await wait_until(_failed(watch), timeout=5, what="the watch to fail")
        await runtime.events.emit("token.refreshed", "google", "fallback", time.time(), **REFRESHED)
        page = await asyncio.wait_for(waiting, timeout=5)
        assert [e.data["connection_id"] for e in page.events] == ["fallback"]
        await watch.close()
    finally:
        await redis.delete(*(runtime.keys.events(s) for s in runtime.keys.all_shards))
        await runtime.close()


async def test_the_watch_stops_when_nobody_waits_and_starts_again_for_the_next(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_watch, "LINGER_SECONDS", 0.2)
    monkeypatch.setattr(event_watch, "BLOCK_MS", 100)
    watch = api.client.app[EVENTS].watch
    start = (await api.page())["next_after"]
    assert (await api.page(after=start, wait=0.3))["events"] == []
    await wait_until(_stopped(watch), timeout=5, what="the idle watch to stop")

    waiting = asyncio.create_task(api.page(after=start, wait=20))
    await wait_until(_waiting(watch, 1), timeout=5, what="the request to wait")
    await api.emit("google", "after-restart")
    assert cids((await asyncio.wait_for(waiting, timeout=5))["events"]) == ["after-restart"]


def _stopped(watch: EventWatch) -> Any:
    async def check() -> bool:
        return not watch.running

    return check


def dead_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _waiting(watch: EventWatch, requests: int) -> Any:
    async def check() -> bool:
        return watch.running and watch.waiting == requests

    return check


def _failed(watch: EventWatch) -> Any:
    async def check() -> bool:
        return not watch.running and watch.failures > 0

    return check


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("after", "abc"), ("after", "$"), ("after", "1-2-3"), ("after", "-1"), ("after", ""),
        ("after", "1700000000000-0/16"), ("after", "99999999999999999999"),
        ("after", "1700000000000-0/"), ("after", "١٢٣"),
        ("limit", "0"), ("limit", "1001"), ("limit", "ten"), ("limit", "1.5"),
        ("limit", "1_0"), ("limit", "\uff11\uff10"), ("limit", " 10"), ("wait", "1_0"),
        ("wait", "-1"), ("wait", "31"), ("wait", "nan"), ("wait", "inf"), ("wait", "soon"),
        ("types", ""), ("types", "token.refreshed,"), ("types", "token.refresh"),
        ("types", "alert.nope."), ("types", "x" * 5000),
    ],
)  # fmt: skip
async def test_a_bad_parameter_is_a_400_naming_it(api: Api, name: str, value: str) -> None:
    response = await api.get(**{name: value})
    body = await response.json()
    assert response.status == 400, body
    assert body["error"] == "bad_request" and body["field"] == name
    assert body["message"].startswith(f"{name}: ")
    assert len(body["message"]) < 200


async def test_the_endpoint_needs_a_key(api: Api) -> None:
    response = await api.client.get("/api/events")
    assert response.status == 401 and (await response.json())["error"] == "unauthorized"


# -- trimmed positions ---------------------------------------------------------------------------


async def test_a_position_older_than_the_stream_keeps_is_a_gap(
    settings: Settings, fakes: Fakes, redis: Redis
) -> None:
    """TOKENLIFE_EVENTS_MAX_LENGTH trimmed the events after a reader's position: the page
    that passes the oldest kept one says `gap: true`, once; a reader past it, or one that
    asked for the oldest kept (after=0), sees no gap."""
    async with serve(own(settings, events_max_length=1000)) as api:
        try:
            start = (await api.page())["next_after"]
            old = await api.emit("google", "old")
            caught_up = (await api.read_until(start, 1))[1]
            for batch in range(15):  # one connection, so one shard
                await asyncio.gather(*(api.emit("google", "old", n=batch * 100 + i)
                                       for i in range(100)))  # fmt: skip
            stream = api.runtime.keys.events(int(old.rpartition("/")[2]))
            kept = str((await redis.xrange(stream, count=1))[0][0])  # type: ignore[index]
            assert await redis.xlen(stream) < 1501 and order(kept) > order(old), "trimmed"

            body = await api.page(after=caught_up, limit=10)
            assert body["gap"] is True and len(body["events"]) == 10
            assert body["events"][0]["id"].partition("/")[0] == kept
            later = await api.page(after=body["next_after"], limit=10)
            assert later["gap"] is False and len(later["events"]) == 10
            assert (await api.page(after="0", limit=10))["gap"] is False
            assert (await api.page(after=later["next_after"], limit=10))["gap"] is False
        finally:
            await drop_streams(redis, api)


# -- what an event holds ---------------------------------------------------------------------


async def test_events_hold_no_token_value_and_validate_against_their_schemas(
    settings: Settings, fakes: Fakes, worker: WorkerHandle, tl: Tokenlife, redis: Redis
) -> None:
    """Real events from real flows (the worker's exchanges), read through the API of the
    session's own prefix."""
    async with serve(settings.model_copy(update={"api_keys": (FULL,)})) as api:
        start = (await api.page())["next_after"]
        cid = f"ev-{uuid.uuid4().hex[:8]}"
        await connect(tl, worker, "google", cid, login_hint=cid)
        await connect(tl, worker, "generic", cid, login_hint=cid)  # no refresh token: alerts
        events, _ = await api.read_until(start, 4)
        mine = [e for e in events if e["data"].get("connection_id") == cid]
        assert {"connection.authorized", "alert.refresh_token_missing"} <= {e["type"] for e in mine}
        for event in events:
            assert problems(event["type"], event["data"]) == [], event
        text = json.dumps(events)
        secrets = fakes.google.issued_secrets + fakes.generic.issued_secrets
        assert secrets and not [s for s in secrets if s in text]


def test_the_type_filter_knows_every_event_type_tokenlife_emits() -> None:
    assert EVENT_TYPES == code_types() == set(event_schemas())


# -- on a Redis Cluster (`pytest -m cluster`; needs redis-server 7) ------------------------


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    cluster = ClusterProcess(tmp_path_factory.mktemp("events-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.cluster
async def test_pages_and_long_polls_on_a_redis_cluster(
    settings: Settings, fakes: Fakes, redis_cluster: ClusterProcess
) -> None:
    """The shards' streams on three servers: TIME asked of each, the follower's reads one
    pipeline per page, the watch polling. Pages still come in order with nothing skipped,
    a trimmed position is a gap, and a long-poll answers when an event comes."""
    on_cluster = own(settings, redis_url=redis_cluster.url, broker_url=settings.redis_url,
                     events_max_length=1000)  # fmt: skip
    async with serve(on_cluster) as api:
        try:
            start = (await api.page())["next_after"]
            ids = [await api.emit("google", f"k{n}") for n in range(60)]
            found, end = await api.read_until(start, 60, limit=7)
            assert sorted(cids(found)) == sorted(f"k{n}" for n in range(60))
            assert [e["id"] for e in found] == sorted(ids, key=order)

            waiting = asyncio.create_task(api.page(after=end, wait=20))
            watch = api.client.app[EVENTS].watch
            await wait_until(_waiting(watch, 1), timeout=5, what="the request to wait")
            await api.emit("google", "news")
            assert cids((await asyncio.wait_for(waiting, timeout=5))["events"]) == ["news"]

            for batch in range(13):  # one connection, so one shard: trimmed past k0
                await asyncio.gather(*(api.emit("google", "k0", n=batch * 100 + i)
                                       for i in range(100)))  # fmt: skip
            body = await api.page(after=ids[0], limit=1000)
            assert body["gap"] is True
        finally:
            cluster = api.runtime.redis
            for shard in api.runtime.keys.all_shards:
                await cluster.delete(api.runtime.keys.events(shard))
