"""The dashboard over HTTP on 127.0.0.1: login, the cookie's flags, CSRF and auth refusals,
escaping, and a limited key's view. The browser drives it in tests/browser/."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.support import Fakes
from tokenlife.adapters.dashboard_sessions import DashboardSessions
from tokenlife.adapters.keys import Keys
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app
from tokenlife.web.dashboard.session import COOKIE, cookie_secure

FULL = "dashboard-full-key-0123456789"
LIMITED = "dashboard-generic-key-0123456789"
XSS = '<img src=x onerror="alert(1)">'
PREFIX = f"dashboard-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(settings: Settings, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    # A prefix of its own: the made-up records here (never decryptable) stay out of the
    # other tests' listings, key rotations and /metrics counts.
    configured = settings.model_copy(
        update={"api_keys": (FULL, f"{LIMITED}:generic"), "key_prefix": PREFIX}
    )
    runtime = await Runtime.open(await load_config(configured))
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as test_client:
        yield test_client
    await runtime.close()


async def log_in(client: TestClient[Any, Any], key: str = FULL) -> str:
    """Log in; the CSRF token of the session (from the page's logout form)."""
    response = await client.post("/dashboard/login", data={"api_key": key}, allow_redirects=False)
    assert response.status == 303, await response.text()
    page = await client.get("/dashboard")
    assert page.status == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert found is not None
    return found.group(1)


async def store_connection(
    redis: Redis, settings: Settings, integration: str, connection_id: str, **fields: str
) -> None:
    """A stored record as a save leaves it (token fields are ciphertext; never read here)."""
    keys, now = Keys(PREFIX, settings.redis_shards), time.time()
    record = {
        "integration": integration, "connection_id": connection_id, "provider": "custom",
        "status": "degraded", "verdict": "refresh_token_missing", "token_type": "Bearer",
        "access_token": "gAAAA-not-decrypted", "created_at": repr(now), "updated_at": repr(now),
        "version": "1", "expires_at": repr(now + 3600), **fields,
    }  # fmt: skip
    await redis.hset(keys.connection(integration, connection_id), mapping=record)  # type: ignore[arg-type]
    shard, member = keys.shard(integration, connection_id), keys.member(integration, connection_id)
    await redis.zadd(keys.connections(integration, shard), {connection_id: 0})
    if record["status"] in ("degraded", "reauthorization_required"):
        await redis.zadd(keys.status_index(shard, record["status"]), {member: 0})


async def test_a_page_without_a_login_goes_to_the_login_form(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/dashboard", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard/login"
    form = await client.get("/dashboard/login")
    assert form.status == 200 and 'name="api_key"' in await form.text()
    assert "script-src 'self'" in form.headers["Content-Security-Policy"]


async def test_login_sets_a_strict_httponly_session_cookie_that_is_not_the_key(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    response = await client.post("/dashboard/login", data={"api_key": FULL}, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert not cookie["secure"]  # plain http to 127.0.0.1: a Secure cookie would be dropped
    assert FULL not in cookie.value
    stored = [k async for k in redis.scan_iter(f"{PREFIX}:dashboard-session:*")]
    assert stored and cookie.value not in "".join(stored)
    for key in stored:
        values = json.dumps(await redis.hgetall(key))
        assert FULL not in values and cookie.value not in values


async def test_over_plain_http_to_another_host_the_cookie_is_secure_and_the_page_warns(
    client: TestClient[Any, Any],
) -> None:
    host = {"Host": "tokens.example.com"}
    form = await client.get("/dashboard/login", headers=host)
    assert "will not keep the Secure session cookie" in await form.text()
    response = await client.post(
        "/dashboard/login", data={"api_key": FULL}, headers=host, allow_redirects=False
    )
    assert response.status == 303 and response.cookies[COOKIE]["secure"]
    local = await client.get("/dashboard/login")
    assert "will not keep" not in await local.text()


@pytest.mark.parametrize(
    ("scheme", "host", "forwarded", "secure"),
    [
        ("http", "127.0.0.1:8080", None, False),
        ("http", "localhost:8080", None, False),
        ("http", "[::1]:8080", None, False),
        ("https", "127.0.0.1:8080", None, True),
        ("http", "127.0.0.1:8080", "https", True),  # a TLS proxy on this machine
        ("http", "tokens.example.com", None, True),
        ("http", "10.0.0.5:8080", None, True),
    ],
)
def test_the_cookie_is_secure_except_over_plain_http_to_loopback(
    scheme: str, host: str, forwarded: str | None, secure: bool
) -> None:
    assert cookie_secure(scheme, host, forwarded) is secure


async def test_a_wrong_key_is_refused_and_sets_no_cookie(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tokenlife.web.dashboard.routes"):
        response = await client.post("/dashboard/login", data={"api_key": "wrong-key-0123456789"})
    assert response.status == 401 and COOKIE not in response.cookies
    assert "wrong-key-0123456789" not in await response.text()
    # Logged for whoever watches for guessing, with the address and never the key.
    (failed,) = [r for r in caplog.records if "failed login" in r.getMessage()]
    assert failed.levelno == logging.WARNING and "127.0.0.1" in failed.getMessage()
    assert "wrong-key-0123456789" not in caplog.text
    forged = client.session.cookie_jar
    forged.update_cookies({COOKIE: "made-up-session-id"})
    page = await client.get("/dashboard", allow_redirects=False)
    assert page.status == 303  # an unknown session id is no login


async def test_state_changing_forms_need_the_sessions_csrf_token(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    cid = f"csrf-{uuid.uuid4().hex[:8]}"
    await store_connection(redis, settings, "generic", cid)
    token = await log_in(client)
    target = {"integration": "generic", "connection_id": cid}
    for path in ("/dashboard/refresh", "/dashboard/connect-link", "/dashboard/logout"):
        missing = await client.post(path, data=target)
        wrong = await client.post(path, data={**target, "csrf_token": "x" * 43})
        assert (missing.status, wrong.status) == (403, 403), path
    # Sent from another site's page: refused even with the right token.
    other = await client.post(
        "/dashboard/connect-link", data={**target, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )  # fmt: skip
    assert other.status == 403
    assert (await client.get("/dashboard")).status == 200  # still logged in
    link = await client.post("/dashboard/connect-link", data={**target, "csrf_token": token})
    assert link.status == 200 and "/connect/generic?session=" in await link.text()
    out = await client.post("/dashboard/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303


async def test_user_data_is_escaped_everywhere(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    cid = f"xss-{uuid.uuid4().hex[:6]}{XSS}"
    await store_connection(redis, settings, "generic", cid, last_error=f"</code>{XSS}")
    keys = Keys(PREFIX, settings.redis_shards)
    await redis.xadd(keys.events(keys.shard("generic", cid)), {
        "type": "alert.reauthorization_required",
        "data": json.dumps({"integration": "generic", "connection_id": cid, "message": XSS,
                            "occurred_at": "2026-01-01T00:00:00Z", "error": XSS,
                            "diagnosis": [{"cause": XSS, "fix": XSS, "evidence": XSS}]}),
    })  # fmt: skip
    await redis.xadd(keys.alerts_dead, {
        "target": XSS, "error": XSS,
        "payload": json.dumps({"integration": "generic", "type": XSS, "count": 1}),
    })  # fmt: skip
    token = await log_in(client)
    text = await (await client.get("/dashboard")).text()
    assert cid.split("<")[0] in text  # the connection is listed
    assert "<img" not in text and 'onerror="' not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    link = await client.post(
        "/dashboard/connect-link",
        data={"integration": "generic", "connection_id": cid, "csrf_token": token},
    )
    assert link.status == 400 and "<img" not in await link.text()  # not a valid connection id


async def test_a_limited_key_sees_and_acts_on_its_integrations_only(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    mine, theirs = f"mine-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    await store_connection(redis, settings, "generic", mine)
    await store_connection(redis, settings, "google", theirs)
    token = await log_in(client, LIMITED)
    text = await (await client.get("/dashboard")).text()
    assert mine in text and theirs not in text
    assert 'data-integration="google"' not in text
    refused = await client.post(
        "/dashboard/connect-link",
        data={"integration": "google", "connection_id": theirs, "csrf_token": token},
    )
    assert refused.status == 404 and "/connect/" not in await refused.text()


async def test_static_files_are_served_locally(client: TestClient[Any, Any]) -> None:
    css = await client.get("/dashboard/static/dashboard.css")
    js = await client.get("/dashboard/static/dashboard.js")
    assert (css.status, js.status) == (200, 200)
    assert js.content_type == "text/javascript" and "http" not in await css.text()
    assert (await client.get("/dashboard/static/..%2fsession.py")).status == 404


async def test_refresh_now_says_what_happened_on_the_next_page(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    cid = f"lapsing-{uuid.uuid4().hex[:8]}"
    await store_connection(redis, settings, "generic", cid)  # no refresh token
    token = await log_in(client)
    shown = await (await client.get("/dashboard")).text()
    card = shown.split(f'data-connection-id="{cid}"', 1)[1].split("</article>", 1)[0]
    assert "Refresh now can't help: this connection has no refresh token" in card
    assert 'class="refresh"' not in card  # no button for a refresh that can't work
    response = await client.post(
        "/dashboard/refresh",
        data={"integration": "generic", "connection_id": cid, "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    page = await (await client.get("/dashboard")).text()
    # Nothing queued: why (core.refresh_refusal, as the API's 409) and the fix.
    assert f"generic/{cid} was not refreshed: this connection has no refresh token" in page
    assert "Fix: Before then, send the user a reconnect link" in page
    assert "was not refreshed" not in await (await client.get("/dashboard")).text()  # once
    gone = await client.post(
        "/dashboard/refresh",
        data={"integration": "generic", "connection_id": "nobody", "csrf_token": token},
    )
    assert gone.status == 404


async def test_a_new_login_ends_the_browsers_previous_session(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    await log_in(client)
    first = client.session.cookie_jar.filter_cookies(client.make_url("/dashboard"))[COOKIE].value
    await log_in(client, LIMITED)
    second = client.session.cookie_jar.filter_cookies(client.make_url("/dashboard"))[COOKIE].value
    sessions = DashboardSessions(redis, Keys(PREFIX))
    assert second != first
    assert await sessions.get(first) is None and await sessions.get(second) is not None
