"""The HTTP API on 127.0.0.1 over the real services: health, readiness, auth, tokens."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.e2e.browser import browser_flow
from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    connect,
    event_types,
    run_refresh_tick,
    serving_api,
    wait_until,
)
from tokenlife.adapters.keys import Keys
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

FULL = "full-access-key-0123456789"
LIMITED = "generic-only-key-0123456789"
ROUTES = [
    ("GET", "/api/integrations"),
    ("GET", "/api/connections?integration=google"),
    ("GET", "/api/connections/google/someone"),
    ("POST", "/api/connections/google/someone/token"),
]


@pytest.fixture
async def client(settings: Settings, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    configured = settings.model_copy(
        update={
            "api_keys": (FULL, f"{LIMITED}:generic"),
            "api_return_to_allowed": ("https://app.example.com/",),
        }
    )
    runtime = await Runtime.open(await load_config(configured))
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as test_client:
        yield test_client
    await runtime.close()


def keys_of(settings: Settings) -> Keys:
    return Keys(settings.key_prefix, settings.redis_shards)


def conn_key(settings: Settings, integration: str, connection_id: str) -> str:
    return keys_of(settings).connection(integration, connection_id)


def auth(key: str = FULL) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_healthz_needs_no_key(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_readyz_follows_the_beat_heartbeat(
    client: TestClient[Any, Any], worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    await redis.delete(keys_of(settings).heartbeat)
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["beat"] is False

    await run_refresh_tick(worker)  # what beat sends every second
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 200 and body["redis"] is True and body["beat"] is True


REFUSALS = [
    ({}, 401),
    ({"Authorization": "Bearer wrong-key-0123456789"}, 401),
    ({"Authorization": FULL}, 401),  # not a Bearer header
    ({"Authorization": f"Bearer {LIMITED}"}, 403),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        (method, path, headers, status)
        for method, path in ROUTES
        for headers, status in REFUSALS
        # A limited key may list integrations: it sees its own (next test).
        if not (status == 403 and path == "/api/integrations")
    ],
)
async def test_every_api_route_refuses_a_missing_wrong_or_foreign_key(
    client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = await client.request(method, path, headers=headers)
    assert response.status == status
    assert (await response.json())["error"] in ("unauthorized", "forbidden")


async def test_a_limited_key_sees_only_its_integrations(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/integrations", headers=auth(LIMITED))
    names = [i["name"] for i in (await response.json())["integrations"]]
    assert names == ["generic"]
    response = await client.get("/api/integrations", headers=auth())
    assert "google" in [i["name"] for i in (await response.json())["integrations"]]


async def test_connections_are_listed_paginated_and_shown_without_tokens(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cids = [f"api-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for cid in cids:
        await connect(tl, worker, "google", cid, login_hint=cid)

    seen: list[str] = []
    cursor: str | None = "0"
    while cursor is not None:
        response = await client.get(
            f"/api/connections?integration=google&status=active&limit=1&cursor={cursor}",
            headers=auth(),
        )
        body = await response.json()
        assert len(body["connections"]) <= 1
        seen += [c["connection_id"] for c in body["connections"]]
        cursor = body["next_cursor"]
    assert set(cids) <= set(seen)

    response = await client.get(f"/api/connections/google/{cids[0]}", headers=auth())
    text = await response.text()
    assert response.status == 200 and '"status": "active"' in text.replace('":"', '": "')
    assert not any(secret in text for secret in fakes.google.issued_secrets)


async def test_the_token_endpoint_returns_a_valid_token_and_refreshes_on_demand(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, fakes: Fakes,
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "google", cid, login_hint=cid)
    url = f"/api/connections/google/{cid}/token"

    first = await (await client.post(url, headers=auth())).json()
    assert first["token_type"] == "Bearer" and first["access_token"] in fakes.google.issued_secrets
    assert_expiry(first, 3600)

    await redis.hset(conn_key(settings, "google", cid), "expires_at", repr(time.time() + 10))
    second = await (await client.post(url, headers=auth())).json()
    assert second["access_token"] != first["access_token"]
    assert_expiry(second, 3600)
    shown = await (await client.get(f"/api/connections/google/{cid}", headers=auth())).json()
    assert shown["expires_at"] == second["expires_at"]  # one format, the same instant


def assert_expiry(answer: dict[str, Any], lifetime: int) -> None:
    """`expires_at` an ISO 8601 UTC string, `expires_in` the whole seconds left until it."""
    assert isinstance(answer["expires_at"], str) and answer["expires_at"].endswith("Z")
    expires_at = datetime.fromisoformat(answer["expires_at"]).timestamp()
    assert isinstance(answer["expires_in"], int)
    assert lifetime - 30 < answer["expires_in"] <= lifetime
    assert 0 <= expires_at - (time.time() + answer["expires_in"]) < 2


async def test_a_connection_needing_reauthorization_answers_409(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "google", cid, login_hint=cid)
    key = conn_key(settings, "google", cid)
    await redis.hset(key, "status", "reauthorization_required")
    await redis.hset(key, "last_error", "invalid_grant")
    response = await client.post(f"/api/connections/google/{cid}/token", headers=auth())
    body = await response.json()
    assert response.status == 409
    assert body["status"] == "reauthorization_required" and body["last_error"] == "invalid_grant"
    assert "access_token" not in body


async def test_unknown_things_are_404_and_large_bodies_413(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/connections/google/nobody", headers=auth())
    assert response.status == 404
    assert response.headers["Cache-Control"] == "no-store"  # errors carry the headers too
    unknown_route = await client.get("/nowhere")
    assert unknown_route.status == 404 and unknown_route.headers["X-Frame-Options"] == "DENY"
    response = await client.post("/api/connections/google/nobody/token", headers=auth(),
                                 data=b"x" * (128 * 1024))  # fmt: skip
    assert response.status == 413


NOT_FOUND = [
    ("GET", "/api/connections/nope/someone", None, "integration"),
    ("GET", "/api/connections/google/nobody", None, "connection"),
    ("POST", "/api/connections/nope/someone/token", None, "integration"),
    ("POST", "/api/connections/google/nobody/token", None, "connection"),
    ("POST", "/api/connections/nope/someone/refresh", None, "integration"),
    ("POST", "/api/connections/google/nobody/refresh", None, "connection"),
    ("DELETE", "/api/connections/nope/someone", None, "integration"),
    ("DELETE", "/api/connections/google/nobody", None, "connection"),
    ("GET", "/api/connections?integration=nope", None, "integration"),
    ("POST", "/api/connect-sessions", {"integration": "nope", "connection_id": "u"},
     "integration"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "resource"), NOT_FOUND)
async def test_a_404_says_which_resource_is_missing(
    client: TestClient[Any, Any], method: str, path: str, body: Any, resource: str
) -> None:
    """Clients tell an unknown integration from an unknown connection by `resource`: the
    message is for people (and kept as it was)."""
    response = await client.request(method, path, headers=auth(), json=body)
    answer = await response.json()
    assert response.status == 404, answer
    assert answer["error"] == "not_found" and answer["resource"] == resource
    assert ("integration" if resource == "integration" else "connection") in answer["message"]
    assert "corrupt_record" not in answer


async def test_a_corrupt_record_is_a_missing_connection(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    cid = f"half-{uuid.uuid4().hex[:8]}"
    key = conn_key(settings, "google", cid)
    await redis.hset(key, mapping={"last_alert": "{}"})  # a write interrupted half-way
    try:
        response = await client.get(f"/api/connections/google/{cid}", headers=auth())
        answer = await response.json()
        assert response.status == 404
        assert answer["error"] == "not_found" and answer["resource"] == "connection"
        assert answer["corrupt_record"] is True
    finally:
        await redis.delete(key)


def test_tokenlife_api_serves_on_the_configured_port(settings: Settings, tmp_path: Path) -> None:
    with (
        serving_api(settings, tmp_path, FULL) as (base, _),
        urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer,
    ):
        assert answer.status == 200


async def test_the_browser_flow_connects_and_returns_to_the_app(
    client: TestClient[Any, Any], worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = f"web-{uuid.uuid4().hex[:8]}"
    status, headers, _ = await browser_flow(
        client, FULL, "google", cid, return_to="https://app.example.com/done?x=1"
    )
    assert status == 302
    back = urlsplit(headers["Location"])
    assert back.netloc == "app.example.com" and back.path == "/done"
    assert parse_qs(back.query) == {
        "x": ["1"], "integration": ["google"], "connection_id": [cid],
        "outcome": ["refreshable"], "status": ["active"],
    }  # fmt: skip
    token = await (await client.post(f"/api/connections/google/{cid}/token", headers=auth())).json()
    assert token["access_token"] in fakes.google.issued_secrets


async def test_a_missing_refresh_token_page_tells_the_person_what_to_pass_on(
    client: TestClient[Any, Any], worker: WorkerHandle
) -> None:
    status, headers, body = await browser_flow(
        client, FULL, "google-as-custom", f"web-{uuid.uuid4().hex[:8]}"
    )
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Refresh token is not present and access token lifetime is too short." in body
    assert "Use provider &quot;google&quot;" in body  # the fix steps, HTML-escaped
    assert "default-src 'none'" in headers["Content-Security-Policy"]


async def test_error_pages(client: TestClient[Any, Any], worker: WorkerHandle) -> None:
    response = await client.get("/oauth/callback?state=nope&code=x")
    assert response.status == 400 and "expired or was already used" in await response.text()
    response = await client.get("/connect/nope", params={"session": "x" * 43})
    assert response.status == 404 and "Ask the app for a new connect link" in await response.text()
    status, _, body = await browser_flow(client, FULL, "generic", "web-deny", deny=True)
    assert status == 400 and "could not be connected" in body


async def test_delete_revokes_at_the_provider_then_forgets_the_connection(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, fakes: Fakes,
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "google", cid, login_hint=cid)

    response = await client.delete(f"/api/connections/google/{cid}", headers=auth())
    assert response.status == 200
    assert await response.json() == {
        "deleted": True, "revoked": True, "revocation_supported": True,
        "revocation_reason": None, "revocation_error": None,
    }  # fmt: skip
    assert any(t in fakes.google.refresh_tokens for t in fakes.google.revoked_tokens)
    assert (await client.get(f"/api/connections/google/{cid}", headers=auth())).status == 404
    assert await redis.zscore(keys_of(settings).schedule_of("google", cid), f"google:{cid}") is None
    assert "connection.deleted" in await event_types(redis, settings, cid)


async def test_refresh_on_request_is_queued_and_done_by_the_worker(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic-offline", cid)
    response = await client.post(f"/api/connections/generic-offline/{cid}/refresh", headers=auth())
    assert response.status == 202

    async def refreshed() -> bool:
        return "token.refreshed" in await event_types(redis, settings, cid)

    await wait_until(refreshed, timeout=30, what="the queued refresh")


async def test_refresh_of_a_connection_needing_reauthorization_is_the_token_409(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, fakes: Fakes,
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "google", cid, login_hint=cid)
    family = next(f for f, fam in fakes.google.families.items() if fam.grant.user == cid)
    fakes.google.script_refresh(family, Reply(status=400, body=b'{"error": "invalid_grant"}'))
    await redis.hset(conn_key(settings, "google", cid), "expires_at", repr(time.time() + 5))
    token = await client.post(f"/api/connections/google/{cid}/token", headers=auth())
    assert token.status == 409  # the refresh was refused: the user must connect again
    sent = fakes.google.refreshes(family)

    refresh = await client.post(f"/api/connections/google/{cid}/refresh", headers=auth())

    assert refresh.status == 409
    body = await refresh.json()
    assert body == await token.json()  # the same reason and the same fixes
    assert body["error"] == "reauthorization_required" and body["last_error"] == "invalid_grant"
    assert body["diagnosis"] and body["last_alert"]["type"] == "alert.reauthorization_required"
    assert fakes.google.refreshes(family) == sent  # nothing was queued


async def test_refresh_of_a_degraded_connection_is_queued(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic-offline", cid)
    key = conn_key(settings, "generic-offline", cid)
    await redis.hset(key, "status", "degraded")
    await redis.hset(key, "status_reason", "refresh_failing")
    response = await client.post(f"/api/connections/generic-offline/{cid}/refresh", headers=auth())
    assert response.status == 202 and await response.json() == {"queued": True}

    async def refreshed() -> bool:
        return "token.refreshed" in await event_types(redis, settings, cid)

    await wait_until(refreshed, timeout=30, what="the queued refresh of a degraded connection")


async def test_refresh_without_a_refresh_token_says_until_when_and_then_reauthorize(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic", cid)  # no offline_access: no refresh token
    url = f"/api/connections/generic/{cid}/refresh"
    shown = await (await client.get(f"/api/connections/generic/{cid}", headers=auth())).json()

    response = await client.post(url, headers=auth())
    body = await response.json()
    assert response.status == 409 and body["error"] == "no_refresh_token"
    # The message says it for a person ("until 14:05 UTC, in 59 min"); the field, exactly.
    clock = shown["expires_at"][11:16] + " UTC"
    assert body["expires_at"] == shown["expires_at"] and clock in body["message"]

    await redis.hset(conn_key(settings, "generic", cid), "expires_at", repr(time.time() - 5))
    response = await client.post(url, headers=auth())
    body = await response.json()
    assert response.status == 409 and body["error"] == "reauthorization_required"
    assert "no refresh token" in body["message"]
    token = await client.post(f"/api/connections/generic/{cid}/token", headers=auth())
    assert token.status == 409 and await token.json() == body

    unknown = await client.post("/api/connections/generic/nobody/refresh", headers=auth())
    assert unknown.status == 404 and (await unknown.json())["error"] == "not_found"


async def test_metrics_show_the_fleet_in_one_scrape(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic-offline", cid)
    await client.post(f"/api/connections/generic-offline/{cid}/refresh", headers=auth())

    async def refreshed() -> bool:
        return "token.refreshed" in await event_types(redis, settings, cid)

    await wait_until(refreshed, timeout=30, what="the refresh")
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    refreshes = {
        (s.labels["provider"], s.labels["outcome"]): s.value
        for s in families["tokenlife_refreshes"].samples
        if s.name == "tokenlife_refreshes_total"
    }
    assert refreshes[("custom", "refreshed")] >= 1
    assert "tokenlife_refresh_duration_seconds" in families
    statuses = {s.labels["status"]: s.value for s in families["tokenlife_connections"].samples}
    assert statuses["active"] >= 1
    assert "tokenlife_schedule_depth" in families and "tokenlife_schedule_lag_seconds" in families


async def test_a_connection_shows_its_last_alert_and_a_409_names_the_fixes(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, fakes: Fakes,
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "google", cid, login_hint=cid)
    refusal = b'{"error": "invalid_grant", "error_description": "Bad Request"}'
    family = next(f for f, fam in fakes.google.families.items() if fam.grant.user == cid)
    fakes.google.script_refresh(family, Reply(status=400, body=refusal))
    await redis.hset(conn_key(settings, "google", cid), "expires_at", repr(time.time() + 5))

    response = await client.post(f"/api/connections/google/{cid}/token", headers=auth())
    body = await response.json()
    assert response.status == 409
    assert body["last_alert"]["type"] == "alert.reauthorization_required"
    assert "'Testing' publishing status" not in body["message"]
    assert any("In production" in fix for fix in body["diagnosis"])
    shown = await (await client.get(f"/api/connections/google/{cid}", headers=auth())).json()
    assert shown["last_alert"]["type"] == "alert.reauthorization_required"


async def test_a_request_that_takes_too_long_ends_in_504(
    settings: Settings, fakes: Fakes, tl: Tokenlife, worker: WorkerHandle, redis: Redis
) -> None:
    cid = f"api-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic-offline", cid, login_hint=cid)
    family = next(f for f, fam in fakes.generic.families.items() if fam.grant.user == cid)
    configured = settings.model_copy(
        update={"api_keys": (FULL,), "api_request_timeout_seconds": 0.3}
    )
    fakes.generic.script_refresh(family, Reply(delay=2))
    await redis.hset(
        conn_key(settings, "generic-offline", cid), "expires_at", repr(time.time() + 5)
    )
    runtime = await Runtime.open(await load_config(configured))
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as slow:
            response = await slow.post(
                f"/api/connections/generic-offline/{cid}/token", headers=auth()
            )
            assert response.status == 504
            assert (await response.json())["error"] == "timeout"
    finally:
        await runtime.close()


async def test_a_redis_outage_is_a_json_503(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    configured = settings.model_copy(
        update={"api_keys": (FULL,), "redis_url": f"redis://127.0.0.1:{dead}/0"}
    )
    runtime = await Runtime.open(await load_config(configured))
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as down:
            response = await down.post("/api/connections/google/u1/token", headers=auth())
            assert response.status == 503
            assert (await response.json())["error"] == "unavailable"
    finally:
        await runtime.close()
