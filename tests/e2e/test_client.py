"""Both HTTP clients, `Client` and `AsyncClient`, against `tokenlife api` running as a real
process, with connections made by the real worker from fake providers. Each test runs
once per client: the sync one is called from a thread, as an app's thread pool would."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from tests.client.api_process import FULL, LIMITED, RETURN_TO, running_api
from tests.support import Fakes, WorkerHandle, connect, event_types, run_refresh_tick, wait_until
from tokenlife.adapters.keys import Keys
from tokenlife.client import (
    AccessToken,
    AsyncClient,
    Client,
    Connection,
    ConnectSession,
    Deletion,
    Event,
    EventPage,
    Integration,
    Readiness,
)
from tokenlife.errors import (
    CorruptRecordError,
    EndpointTimeoutError,
    EventsTrimmedError,
    ForbiddenError,
    NoRefreshTokenError,
    ReauthorizationRequiredError,
    TokenlifeError,
    TransientError,
    TransportError,
    UnauthorizedError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


@pytest.fixture(scope="module")
def api_url(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_api(settings, tmp_path_factory.mktemp("client-api")) as url:
        yield url


class Driven:
    """One client or the other behind one async interface, so each test drives both: the
    sync client's calls run in a worker thread."""

    def __init__(self, client: Client | AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self.client, method)
        if isinstance(self.client, Client):
            return await asyncio.to_thread(bound, *args, **kwargs)
        return await bound(*args, **kwargs)

    async def collect(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        items = getattr(self.client, method)(*args, **kwargs)
        if isinstance(self.client, Client):
            return await asyncio.to_thread(list, items)
        return [item async for item in items]

    async def close(self) -> None:
        if isinstance(self.client, Client):
            self.client.close()
        else:
            await self.client.aclose()


def make(kind: str, base_url: str, api_key: str, **options: Any) -> Driven:
    return Driven((Client if kind == "sync" else AsyncClient)(base_url, api_key, **options))


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(kind: str, api_url: str) -> AsyncIterator[Driven]:
    driven = make(kind, api_url, FULL)
    yield driven
    await driven.close()


def new_id() -> str:
    return f"client-{uuid.uuid4().hex[:8]}"


def test_both_clients_have_the_same_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, asynchronous = public(Client), public(AsyncClient)
    assert set(sync) == set(asynchronous) == {
        "integrations", "connections", "connection", "access_token", "refresh", "delete",
        "create_connect_session", "ready", "events", "follow_events", "follow_pages",
    }  # fmt: skip
    for name, signature in sync.items():
        # A sync reader is stopped by a threading.Event; an async one by cancelling it.
        ours = {k: v for k, v in signature.parameters.items() if k != "stop"}
        assert ours == dict(asynchronous[name].parameters), name


async def test_integrations_are_those_the_key_may_use(
    client: Driven, kind: str, api_url: str
) -> None:
    integrations = await client.call("integrations")
    assert all(isinstance(i, Integration) for i in integrations)
    assert {"google", "generic"} <= {i.name for i in integrations}
    limited = make(kind, api_url, LIMITED)
    try:
        (generic,) = await limited.call("integrations")
    finally:
        await limited.close()
    assert generic.name == "generic" and generic.provider == "custom"
    assert generic.scopes == ("openid", "profile")


async def test_a_connection_is_shown_and_gives_a_token_the_provider_issued(
    client: Driven, tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    await connect(tl, worker, "google", cid, login_hint=cid)

    shown = await client.call("connection", "google", cid)
    assert isinstance(shown, Connection)
    assert (shown.connection_id, shown.status, shown.has_refresh_token) == (cid, "active", True)
    token = await client.call("access_token", "google", cid)
    assert isinstance(token, AccessToken)
    assert token.access_token in fakes.google.issued_secrets
    assert token.token_type == "Bearer"
    assert token.expires_at is not None and token.expires_at > time.time() + 3000
    # The API's ISO 8601 string, parsed to the Unix time the in-process library gives.
    in_process = (await tl.get_access_token("google", cid)).expires_at
    assert in_process is not None and abs(token.expires_at - in_process) < 1e-5  # µs precision
    assert token.access_token not in repr(token)
    assert "token_type='Bearer'" in repr(token)


async def test_refresh_is_queued_and_done_by_the_worker(
    client: Driven, tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    await connect(tl, worker, "generic-offline", cid)
    assert await client.call("refresh", "generic-offline", cid) is None

    async def refreshed() -> bool:
        return "token.refreshed" in await event_types(redis, settings, cid)

    await wait_until(refreshed, timeout=30, what="the refresh queued through the client")


async def test_refresh_without_a_refresh_token_says_until_when(
    client: Driven, tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    await connect(tl, worker, "generic", cid)  # no offline_access: no refresh token
    shown = await client.call("connection", "generic", cid)

    with pytest.raises(NoRefreshTokenError) as raised:
        await client.call("refresh", "generic", cid)
    error = raised.value
    assert (error.integration, error.connection_id) == ("generic", cid)
    assert error.expires_at == shown.expires_at is not None
    assert (error.api_status, error.api_error) == (409, "no_refresh_token")
    assert isinstance(error, UsageError)  # what an `except UsageError` caught before

    # Once the access token has expired, only connecting again helps.
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic", cid)
    await redis.hset(key, "expires_at", repr(time.time() - 5))
    with pytest.raises(ReauthorizationRequiredError) as expired:
        await client.call("refresh", "generic", cid)
    assert "access token expired, no refresh token" in expired.value.reason
    assert expired.value.connection_id == cid


async def test_a_deleted_connection_is_unknown_afterwards(
    client: Driven, tl: Tokenlife, worker: WorkerHandle
) -> None:
    cid = new_id()
    await connect(tl, worker, "google", cid, login_hint=cid)

    assert await client.call("delete", "google", cid) == Deletion(
        deleted=True, revoked=True, revocation_supported=True,
        revocation_reason=None, revocation_error=None,
    )  # fmt: skip
    with pytest.raises(UnknownConnectionError, match=cid) as gone:
        await client.call("connection", "google", cid)
    assert (gone.value.api_status, gone.value.api_error) == (404, "not_found")
    with pytest.raises(UnknownIntegrationError, match="no-such-integration"):
        await client.call("connection", "no-such-integration", cid)
    # Path segments are quoted whole, so an id with "/", "?" or "+" reaches the route intact.
    with pytest.raises(UnknownConnectionError, match=re.escape("no connection 'a/b?c+d'")):
        await client.call("connection", "google", "a/b?c+d")


async def test_a_half_written_record_is_a_corrupt_record(
    client: Driven, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    key = Keys(settings.key_prefix, settings.redis_shards).connection("google", cid)
    await redis.hset(key, mapping={"last_alert": "{}"})  # a write interrupted half-way
    try:
        with pytest.raises(CorruptRecordError) as raised:
            await client.call("connection", "google", cid)
    finally:
        await redis.delete(key)
    assert isinstance(raised.value, UnknownConnectionError)  # as good as absent


async def test_a_connection_needing_reauthorization_raises_its_error(
    client: Driven, tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    await connect(tl, worker, "google", cid, login_hint=cid)
    token = await client.call("access_token", "google", cid)
    key = Keys(settings.key_prefix, settings.redis_shards).connection("google", cid)
    await redis.hset(key, "status", "reauthorization_required")
    await redis.hset(key, "last_error", "invalid_grant")

    with pytest.raises(ReauthorizationRequiredError) as raised:
        await client.call("access_token", "google", cid)
    assert (raised.value.integration, raised.value.connection_id) == ("google", cid)
    assert raised.value.reason == "invalid_grant"
    assert raised.value.api_error == "reauthorization_required"
    assert token.access_token not in str(raised.value)
    with pytest.raises(ReauthorizationRequiredError) as refused:  # not queued
        await client.call("refresh", "google", cid)
    assert (refused.value.connection_id, refused.value.reason) == (cid, "invalid_grant")


async def test_one_sync_client_serves_many_threads_at_once(
    api_url: str, tl: Tokenlife, worker: WorkerHandle
) -> None:
    cids = [new_id() for _ in range(4)]
    for cid in cids:
        await connect(tl, worker, "google", cid, login_hint=cid)

    def work(n: int) -> tuple[str, str, str]:
        cid = cids[n % len(cids)]
        shown = shared.connection("google", cid)
        return cid, shown.connection_id, shared.access_token("google", cid).access_token

    with Client(api_url, FULL) as shared, ThreadPoolExecutor(16) as pool:
        results = await asyncio.to_thread(lambda: list(pool.map(work, range(64))))
    assert all(cid == shown for cid, shown, _ in results)
    tokens = {cid: {token for c, _, token in results if c == cid} for cid in cids}
    # Each answer went to the thread that asked: one token per connection, none shared.
    assert all(len(found) == 1 for found in tokens.values())
    assert len(set.union(*tokens.values())) == len(cids)


async def test_a_wrong_or_foreign_key_is_told_apart(kind: str, api_url: str) -> None:
    wrong = "wrong-key-0123456789"
    client = make(kind, api_url, wrong)
    try:
        with pytest.raises(UnauthorizedError, match="401 unauthorized") as raised:
            await client.call("integrations")
    finally:
        await client.close()
    assert wrong not in str(raised.value) and wrong not in repr(client.client)
    limited = make(kind, api_url, LIMITED)
    try:
        with pytest.raises(ForbiddenError, match="403 forbidden"):
            await limited.call("connection", "google", "someone")
    finally:
        await limited.close()
    assert LIMITED not in repr(limited.client) and repr(limited.client).endswith(f"({api_url!r})")


async def test_pages_are_followed_until_every_connection_is_seen(
    kind: str, api_url: str, tl: Tokenlife, worker: WorkerHandle
) -> None:
    cids = {new_id() for _ in range(3)}
    for cid in cids:
        await connect(tl, worker, "google", cid, login_hint=cid)
    requests: list[httpx.Request] = []
    pages: list[dict[str, Any]] = []

    # An httpx client of the caller's own, with its own hooks: the client uses it and
    # leaves it open.
    if kind == "sync":

        def record(response: httpx.Response) -> None:
            response.read()
            requests.append(response.request)
            pages.append(response.json())

        with httpx.Client(event_hooks={"response": [record]}) as mine:
            with Client(api_url, FULL, http_client=mine) as client:
                seen = await asyncio.to_thread(
                    lambda: [c.connection_id for c in client.connections("google", limit=1)]
                )
            assert not mine.is_closed
    else:

        async def arecord(response: httpx.Response) -> None:
            await response.aread()
            requests.append(response.request)
            pages.append(response.json())

        async with httpx.AsyncClient(event_hooks={"response": [arecord]}) as amine:
            async with AsyncClient(api_url, FULL, http_client=amine) as aclient:
                seen = [c.connection_id async for c in aclient.connections("google", limit=1)]
            assert not amine.is_closed

    assert cids <= set(seen) and len(seen) == len(set(seen))
    # At most one connection a page; a page may hold none while more follow (the walk goes
    # shard by shard): the client follows each page's cursor until there is none.
    assert all(len(page["connections"]) <= 1 for page in pages)
    assert [c["connection_id"] for page in pages for c in page["connections"]] == seen
    cursors = [page["next_cursor"] for page in pages]
    assert [r.url.params.get("cursor") for r in requests] == [None, *cursors[:-1]]
    assert {r.url.path for r in requests} == {"/api/connections"}
    assert cursors[-1] is None and None not in cursors[:-1]


async def test_a_closed_port_is_a_transport_error_never_sent(kind: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make(kind, f"http://127.0.0.1:{port}", FULL)
    try:
        with pytest.raises(TransportError, match="ConnectError") as raised:
            await client.call("integrations")
    finally:
        await client.close()
    assert raised.value.request_sent is False  # refused: safe to send again
    assert FULL not in str(raised.value) and raised.value.__cause__ is None
    assert raised.value.__context__ is None  # httpx's request holds the key


async def test_no_answer_within_the_timeout_is_transient(kind: str) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"integrations": []})

    app = web.Application()
    app.router.add_get("/api/integrations", hang)
    async with TestServer(app, host="127.0.0.1") as silent:
        client = make(kind, str(silent.make_url("/")), FULL, timeout=0.2)
        try:
            with pytest.raises(EndpointTimeoutError, match="ReadTimeout"):
                await client.call("integrations")
        finally:
            release.set()
            await client.close()


async def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(kind: str) -> None:
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"integrations": []})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere/api/integrations")

    app = web.Application()
    app.router.add_get("/api/integrations", moved)
    app.router.add_get("/elsewhere/api/integrations", elsewhere)
    async with TestServer(app, host="127.0.0.1") as server:
        client = make(kind, str(server.make_url("/")), FULL)
        try:
            with pytest.raises(TokenlifeError, match="HTTP 302") as raised:
                await client.call("integrations")
        finally:
            await client.close()
    assert type(raised.value) is TokenlifeError and raised.value.api_status == 302
    assert seen == []


async def test_a_proxy_page_is_read_by_its_status(kind: str) -> None:
    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>",
                            headers={"Retry-After": "3"})  # fmt: skip

    app = web.Application()
    app.router.add_get("/api/integrations", gateway)
    app.router.add_get("/readyz", gateway)
    async with TestServer(app, host="127.0.0.1") as proxy:
        client = make(kind, str(proxy.make_url("/")), FULL)
        try:
            for method in ("integrations", "ready"):
                with pytest.raises(TransientError) as raised:
                    await client.call(method)
                assert raised.value.retry_after == 3.0 and raised.value.api_status == 502
                assert raised.value.api_error is None
        finally:
            await client.close()


async def test_ready_reports_its_checks_whether_ready_or_not(
    client: Driven, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    await redis.delete(Keys(settings.key_prefix, settings.redis_shards).heartbeat)
    not_ready = await client.call("ready")
    assert isinstance(not_ready, Readiness)
    assert not_ready.ready is False and not_ready.beat is False and not_ready.redis is True

    await run_refresh_tick(worker)
    ready = await client.call("ready")
    assert ready.ready is True and ready.beat_last_tick_seconds_ago is not None


async def test_a_connect_session_starts_the_browser_flow_once(
    client: Driven, api_url: str, fakes: Fakes
) -> None:
    # "+" sent unquoted would arrive as a space, which a connection id may not hold.
    session = await client.call(
        "create_connect_session", "google", "user+1@x", return_to=f"{RETURN_TO}done?a=b",
        end_user={"id": "42", "email": "ada@example.com", "display_name": "Ada"},
    )  # fmt: skip
    assert isinstance(session, ConnectSession)
    assert FULL not in session.url and session.token in session.url
    assert session.token not in repr(session)
    assert 1790 <= (session.expires_at - datetime.now(UTC)).total_seconds() <= 1800
    link = urlsplit(session.url)
    async with aiohttp.ClientSession() as browser:
        url = f"{api_url}{link.path}?{link.query}"
        async with browser.get(url, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            assert response.headers["Location"].startswith(fakes.google.base_url)
        async with browser.get(url, allow_redirects=False) as again:
            assert again.status == 401  # once


async def test_a_connect_session_refused_names_the_problem(
    client: Driven, kind: str, api_url: str
) -> None:
    with pytest.raises(UsageError, match="return_to") as refused:
        await client.call(
            "create_connect_session", "google", "u1", return_to="https://evil.example/"
        )
    assert refused.value.api_error == "bad_request"
    with pytest.raises(UnknownIntegrationError):
        await client.call("create_connect_session", "nope", "u1")
    limited = make(kind, api_url, LIMITED)
    try:
        with pytest.raises(ForbiddenError):
            await limited.call("create_connect_session", "google", "u1")
    finally:
        await limited.close()


async def test_a_closed_client_says_so(kind: str, api_url: str) -> None:
    client = make(kind, api_url, FULL)
    await client.close()
    with pytest.raises(UsageError, match="closed"):
        await client.call("integrations")


async def test_tokenlife_client_is_the_async_client_deprecated(api_url: str) -> None:
    import tokenlife.client

    with pytest.warns(DeprecationWarning, match="AsyncClient"):
        alias = tokenlife.client.TokenlifeClient
    assert issubclass(alias, AsyncClient)
    # 0.1's way, an aiohttp session passed in, fails at once and says what to write.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UsageError, match=r"http_client=httpx\.AsyncClient") as raised:
            alias(api_url, FULL, session=session)
    assert "From TokenlifeClient" in str(raised.value) and FULL not in str(raised.value)
    async with alias(api_url, FULL, timeout=10) as client:  # 0.1's other arguments work
        assert {i.name for i in await client.integrations()} >= {"generic"}


@pytest.mark.parametrize(
    ("base_url", "api_key", "options", "message"),
    [
        ("ftp://tokens.internal", FULL, {}, "base_url"),
        ("https://tokens.internal?x=1", FULL, {}, "base_url"),
        ("https://tokens.internal", "", {}, "api_key is empty"),
        ("https://tokens.internal", f"{FULL}\n", {}, "api_key holds whitespace"),
        ("https://tokens.internal", "k\u00e9y", {}, "non-ASCII"),
        ("https://ops:pw@tokens.internal", FULL, {}, "without credentials"),
        ("https://tokens.internal/#x", FULL, {}, "base_url"),
        ("https://tokens.internal", FULL, {"timeout": 0}, "timeout"),
        ("https://tokens.internal", FULL, {"timeout": httpx.Timeout(5, read=-1)}, "read"),
    ],
)
def test_bad_arguments_are_usage_errors(
    base_url: str, api_key: str, options: dict[str, Any], message: str
) -> None:
    for cls in (Client, AsyncClient):
        with pytest.raises(UsageError, match=message):
            cls(base_url, api_key, **options)


def test_a_transport_and_an_http_client_are_one_too_many() -> None:
    with httpx.Client() as mine, pytest.raises(UsageError, match="not both"):
        Client("https://tokens.internal", FULL, transport=httpx.HTTPTransport(), http_client=mine)


async def authorized_of(
    client: Driven, after: str, connection_ids: set[str], timeout: float = 30
) -> tuple[list[Event], str]:
    """The connection.authorized events of `connection_ids` read from `after` on, until all
    came (other tests write events meanwhile), and where the last page ended."""
    deadline = time.monotonic() + timeout
    found: list[Event] = []
    while {e.connection_id for e in found} < connection_ids:
        assert time.monotonic() < deadline, f"saw {found} of {connection_ids}"
        page = await client.call("events", after, wait=5, types="connection.authorized")
        found += [e for e in page.events if e.connection_id in connection_ids]
        after = page.next_after
    return found, after


async def test_events_from_now_on_and_resumed_from_any_id(
    client: Driven, tl: Tokenlife, worker: WorkerHandle
) -> None:
    start = await client.call("events")  # no `after`: after the newest, only what comes
    assert isinstance(start, EventPage) and start.events == () and not start.gap
    cids = [new_id() for _ in range(3)]
    for cid in cids:
        await connect(tl, worker, "google", cid, login_hint=cid)

    found, _ = await authorized_of(client, start.next_after, set(cids))
    assert [e.connection_id for e in found] == cids  # in the order they happened
    assert all(e.type == "connection.authorized" and e.integration == "google" for e in found)
    assert all(e.occurred_at.tzinfo is not None for e in found)
    # From the first one's id: the other two, nothing repeated, nothing skipped.
    resumed, _ = await authorized_of(client, found[0].id, set(cids[1:]))
    assert [e.id for e in resumed] == [e.id for e in found[1:]]


async def test_follow_events_yields_what_comes(
    kind: str, api_url: str, tl: Tokenlife, worker: WorkerHandle
) -> None:
    cid = new_id()
    if kind == "sync":
        with Client(api_url, FULL) as client:
            after = client.events().next_after
            await connect(tl, worker, "generic", cid)

            def first_of_cid() -> Event:
                events = client.follow_events(after, wait=5, types=["connection."])
                return next(e for e in events if e.connection_id == cid)

            found = await asyncio.wait_for(asyncio.to_thread(first_of_cid), timeout=30)
    else:
        async with AsyncClient(api_url, FULL) as aclient:
            after = (await aclient.events()).next_after
            await connect(tl, worker, "generic", cid)

            async def afirst_of_cid() -> Event:
                async for e in aclient.follow_events(after, wait=5, types=["connection."]):
                    if e.connection_id == cid:
                        return e
                raise AssertionError("follow_events ended")

            found = await asyncio.wait_for(afirst_of_cid(), timeout=30)
    assert (found.type, found.integration) == ("connection.authorized", "generic")


async def test_a_limited_key_sees_only_its_integrations_events(
    kind: str, api_url: str, tl: Tokenlife, worker: WorkerHandle
) -> None:
    limited = make(kind, api_url, LIMITED)
    try:
        after = (await limited.call("events")).next_after
        mine, theirs = new_id(), new_id()
        await connect(tl, worker, "google", theirs, login_hint=theirs)
        await connect(tl, worker, "generic", mine)
        found, _ = await authorized_of(limited, after, {mine})
        page = await limited.call("events", after, limit=1000)
    finally:
        await limited.close()
    assert [e.integration for e in found] == ["generic"]
    assert {e.integration for e in page.events} <= {"generic"}
    assert theirs not in {e.connection_id for e in page.events}


async def test_a_long_poll_answers_when_an_event_comes(
    client: Driven, tl: Tokenlife, worker: WorkerHandle
) -> None:
    after = (await client.call("events")).next_after
    started = time.monotonic()
    waiting = asyncio.ensure_future(
        client.call("events", after, wait=25, types="connection.authorized")
    )
    await connect(tl, worker, "google", new_id())
    page = await asyncio.wait_for(waiting, timeout=30)
    assert page.events and time.monotonic() - started < 20


async def following(client: Driven, after: str, connection_id: str, **options: Any) -> list[Event]:
    """What follow_events yields from `after` up to `connection_id`'s authorization (which
    was written: the loop ends)."""

    def wanted(event: Event) -> bool:
        return event.connection_id == connection_id and event.type == "connection.authorized"

    def read(events: Iterator[Event]) -> list[Event]:
        found = []
        for event in events:
            found.append(event)
            if wanted(event):
                break
        return found

    if isinstance(client.client, Client):
        events = client.client.follow_events(after, wait=1, **options)
        return await asyncio.wait_for(asyncio.to_thread(read, events), 30)
    found: list[Event] = []
    async for event in client.client.follow_events(after, wait=1, **options):
        found.append(event)
        if wanted(event):
            break
    return found


async def test_events_trimmed_unread_are_never_lost_silently(
    kind: str, api_url: str, tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    keys = Keys(settings.key_prefix, settings.redis_shards)
    lost = new_id()
    # On the same shard: the page that reaches `kept` there passes the trimmed part.
    kept = next(cid for cid in iter(new_id, None)
                if keys.shard("google", cid) == keys.shard("google", lost))  # fmt: skip
    client = make(kind, api_url, FULL)
    try:
        before = (await client.call("events")).next_after
        await connect(tl, worker, "google", lost, login_hint=lost)
        (event,), _ = await authorized_of(client, before, {lost})
        # What TOKENLIFE_EVENTS_MAX_LENGTH does to a full stream: trim up to and including
        # the event, which no reader got past yet.
        stream_id, _, shard = event.id.partition("/")
        milliseconds, _, sequence = stream_id.partition("-")
        stream = keys.events(int(shard))
        await redis.xtrim(stream, minid=f"{milliseconds}-{int(sequence) + 1}")
        await connect(tl, worker, "google", kept, login_hint=kept)

        with pytest.raises(EventsTrimmedError) as raised:
            await following(client, before, kept, types="connection.")
        assert raised.value.after == before and raised.value.page.gap
        gaps: list[EventPage] = []
        found = await following(client, before, kept, types="connection.", on_gap=gaps.append)
    finally:
        await client.close()
    assert [e.connection_id for e in found if e.connection_id in (lost, kept)] == [kept]
    assert len(gaps) == 1 and gaps[0].gap
