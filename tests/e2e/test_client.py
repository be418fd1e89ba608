"""TokenlifeClient against the real app on 127.0.0.1, with connections made by the real
worker from fake providers."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, connect, event_types, run_refresh_tick, wait_until
from tokenlife.adapters.keys import Keys
from tokenlife.client import TokenlifeClient, error_for
from tokenlife.errors import (
    DecryptionError,
    ReauthorizationRequiredError,
    TokenlifeError,
    TransientError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

FULL = "client-full-key-0123456789"
LIMITED = "client-generic-key-0123456789"


@pytest.fixture
async def server(settings: Settings, fakes: Fakes) -> AsyncIterator[TestServer]:
    configured = settings.model_copy(
        update={
            "api_keys": (FULL, f"{LIMITED}:generic"),
            "api_return_to_allowed": ("https://app.example.com/",),
        }
    )
    runtime = await Runtime.open(await load_config(configured))
    test_server = TestServer(create_app(runtime), host="127.0.0.1")
    async with test_server:
        yield test_server
    await runtime.close()


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[TokenlifeClient]:
    async with TokenlifeClient(str(server.make_url("/")), FULL) as tokenlife:
        yield tokenlife


def new_id() -> str:
    return f"client-{uuid.uuid4().hex[:8]}"


async def test_integrations_are_those_the_key_may_use(
    client: TokenlifeClient, server: TestServer
) -> None:
    assert "google" in [i["name"] for i in await client.integrations()]
    async with TokenlifeClient(str(server.make_url("/")), LIMITED) as limited:
        assert [i["name"] for i in await limited.integrations()] == ["generic"]


async def test_a_connection_is_shown_and_gives_a_token_the_provider_issued(
    client: TokenlifeClient, tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    await connect(tl, worker, "google", cid, login_hint=cid)

    shown = await client.connection("google", cid)
    assert shown["connection_id"] == cid and shown["status"] == "active"
    token = await client.access_token("google", cid)
    assert token.access_token in fakes.google.issued_secrets
    assert token.token_type == "Bearer"
    assert token.expires_at is not None and token.expires_at > time.time() + 3000
    # The API's ISO 8601 string, parsed to the Unix time the in-process library gives.
    in_process = (await tl.get_access_token("google", cid)).expires_at
    assert in_process is not None and abs(token.expires_at - in_process) < 1e-5  # µs precision
    assert token.access_token not in repr(token)
    assert "token_type='Bearer'" in repr(token)


async def test_refresh_is_queued_and_done_by_the_worker(
    client: TokenlifeClient, tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = new_id()
    await connect(tl, worker, "generic-offline", cid)
    await client.refresh("generic-offline", cid)

    async def refreshed() -> bool:
        return "token.refreshed" in await event_types(redis, settings, cid)

    await wait_until(refreshed, timeout=30, what="the refresh queued through the client")


async def test_a_deleted_connection_is_unknown_afterwards(
    client: TokenlifeClient, tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    await connect(tl, worker, "google", cid, login_hint=cid)

    assert await client.delete("google", cid) == {
        "deleted": True, "revoked": True, "revocation_supported": True,
        "revocation_reason": None, "revocation_error": None,
    }  # fmt: skip
    with pytest.raises(UnknownConnectionError, match=cid):
        await client.connection("google", cid)
    with pytest.raises(UnknownIntegrationError, match="no-such-integration"):
        await client.connection("no-such-integration", cid)
    # Path segments are quoted whole, so an id with "/" or "?" reaches the route intact.
    with pytest.raises(UnknownConnectionError, match=re.escape("no connection 'a/b?c'")):
        await client.connection("google", "a/b?c")


async def test_a_connection_needing_reauthorization_raises_its_error(
    client: TokenlifeClient, tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = new_id()
    await connect(tl, worker, "google", cid, login_hint=cid)
    token = await client.access_token("google", cid)
    key = Keys(settings.key_prefix, settings.redis_shards).connection("google", cid)
    await redis.hset(key, "status", "reauthorization_required")
    await redis.hset(key, "last_error", "invalid_grant")

    with pytest.raises(ReauthorizationRequiredError) as raised:
        await client.access_token("google", cid)
    assert (raised.value.integration, raised.value.connection_id) == ("google", cid)
    assert raised.value.reason == "invalid_grant"
    assert token.access_token not in str(raised.value)
    with pytest.raises(ReauthorizationRequiredError) as refused:  # not queued
        await client.refresh("google", cid)
    assert (refused.value.connection_id, refused.value.reason) == (cid, "invalid_grant")


async def test_a_wrong_or_foreign_key_is_a_usage_error(server: TestServer) -> None:
    wrong = "wrong-key-0123456789"
    async with TokenlifeClient(str(server.make_url("/")), wrong) as client:
        with pytest.raises(UsageError, match="401 unauthorized") as raised:
            await client.integrations()
        assert wrong not in str(raised.value) and wrong not in repr(client)
    async with TokenlifeClient(str(server.make_url("/")), LIMITED) as limited:
        with pytest.raises(UsageError, match="403 forbidden"):
            await limited.connection("google", "someone")


async def test_pages_are_followed_until_every_connection_is_seen(
    server: TestServer, tl: Tokenlife, worker: WorkerHandle
) -> None:
    cids = {new_id() for _ in range(3)}
    for cid in cids:
        await connect(tl, worker, "google", cid, login_hint=cid)
    requests: list[tuple[str, str | None]] = []
    pages: list[dict[str, Any]] = []

    async def record(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        requests.append((params.url.path, params.url.query.get("cursor")))
        pages.append(await params.response.json())

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(record)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = TokenlifeClient(str(server.make_url("/")), FULL, session=session)
        async with client:
            seen = [c["connection_id"] async for c in client.connections("google", "active", 1)]
        assert not session.closed  # a session passed in is the caller's to close
    assert cids <= set(seen) and len(seen) == len(set(seen))
    # At most one connection a page; a page may hold none while more follow (the walk goes
    # shard by shard): the client follows each page's cursor until there is none.
    assert all(len(page["connections"]) <= 1 for page in pages)
    assert [c["connection_id"] for page in pages for c in page["connections"]] == seen
    cursors = [page["next_cursor"] for page in pages]
    assert requests == [("/api/connections", cursor) for cursor in [None, *cursors[:-1]]]
    assert cursors[-1] is None and None not in cursors[:-1]


async def test_a_closed_port_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with TokenlifeClient(f"http://127.0.0.1:{port}", FULL) as client:
        with pytest.raises(TransientError, match="ClientConnectorError") as raised:
            await client.integrations()
    assert FULL not in str(raised.value) and raised.value.__cause__ is None


async def test_no_answer_within_the_timeout_is_transient() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"integrations": []})

    app = web.Application()
    app.router.add_get("/api/integrations", hang)
    async with TestServer(app, host="127.0.0.1") as silent:
        try:
            async with TokenlifeClient(str(silent.make_url("/")), FULL, timeout=0.2) as client:
                with pytest.raises(TransientError, match=re.escape("no answer within 0.2 s")):
                    await client.integrations()
        finally:
            release.set()


async def test_ready_reports_its_checks_whether_ready_or_not(
    client: TokenlifeClient, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    await redis.delete(Keys(settings.key_prefix, settings.redis_shards).heartbeat)
    not_ready = await client.ready()
    assert not_ready["ready"] is False and not_ready["beat"] is False

    await run_refresh_tick(worker)
    ready = await client.ready()
    assert ready["ready"] is True and ready["redis"] is True


async def test_a_connect_session_starts_the_browser_flow_once(
    client: TokenlifeClient, server: TestServer, fakes: Fakes
) -> None:
    # "+" sent unquoted would arrive as a space, which a connection id may not hold.
    session = await client.create_connect_session(
        "google", "user+1@x", return_to="https://app.example.com/done?a=b",
        end_user={"id": "42", "email": "ada@example.com", "display_name": "Ada"},
    )  # fmt: skip
    assert FULL not in session.url and session.token in session.url
    assert session.token not in repr(session)
    assert 1790 <= (session.expires_at - datetime.now(UTC)).total_seconds() <= 1800
    link = urlsplit(session.url)
    async with aiohttp.ClientSession() as browser:
        url = server.make_url(f"{link.path}?{link.query}")
        async with browser.get(url, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            assert response.headers["Location"].startswith(fakes.google.base_url)
        async with browser.get(url, allow_redirects=False) as again:
            assert again.status == 401  # once


async def test_a_connect_session_refused_names_the_problem(
    client: TokenlifeClient, server: TestServer
) -> None:
    with pytest.raises(UsageError, match="return_to"):
        await client.create_connect_session("google", "u1", return_to="https://evil.example/")
    with pytest.raises(UnknownIntegrationError):
        await client.create_connect_session("nope", "u1")
    async with TokenlifeClient(str(server.make_url("/")), LIMITED) as limited:
        with pytest.raises(UsageError, match="403"):
            await limited.create_connect_session("google", "u1")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "bad_request", "message": "limit and cursor must be integers"}, UsageError),
        (409, {"error": "no_refresh_token", "message": "no refresh token"}, UsageError),
        (409, {"error": "undecryptable", "message": "check the keys"}, DecryptionError),
        (413, {"error": "too_large", "message": "the request body is too large"}, UsageError),
        (404, {"error": "not_found", "message": "no integration named 'x'"},
         UnknownIntegrationError),
        (404, {"error": "not_found", "message": "no connection 'u' in 'x'"},
         UnknownConnectionError),
        (404, None, TokenlifeError),  # the router's page: a wrong base_url, not a connection
        (503, {"error": "provider_unavailable", "message": "timeout"}, TransientError),
        (502, None, TransientError),  # a proxy in front
        (500, {"error": "internal_error", "message": "see the service log"}, TokenlifeError),
        (302, None, TokenlifeError),  # e.g. http redirected to https: fix base_url
    ],
)  # fmt: skip
def test_answers_map_onto_the_error_tree(
    status: int, body: dict[str, str] | None, expected: type[TokenlifeError]
) -> None:
    assert type(error_for(status, body, CIMultiDict())) is expected


def test_retry_after_is_kept_as_a_hint() -> None:
    hinted = error_for(429, None, CIMultiDict({"retry-after": "7"}))
    assert isinstance(hinted, TransientError) and hinted.retry_after == 7.0
    unhinted = error_for(503, None, CIMultiDict({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}))
    assert isinstance(unhinted, TransientError) and unhinted.retry_after is None
