"""POST /api/connect-sessions and GET /connect on 127.0.0.1 over the real services: the
answer's shape, who may create a session, and what a session carries into the flow."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.e2e.browser import browser, local, new_session, open_link, serving
from tests.support import Fakes
from tokenlife.adapters.keys import Keys
from tokenlife.core.integration import Integration
from tokenlife.settings import Settings
from tokenlife.web.connect_sessions import connect_link

FULL = "sessions-full-key-0123456789"
LIMITED = "sessions-generic-key-0123456789"


@pytest.fixture
async def client(settings: Settings, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(
        settings,
        api_keys=(FULL, f"{LIMITED}:generic"),
        api_return_to_allowed=("https://app.example.com/",),
    ) as test_client:
        yield test_client


async def stored_sessions(redis: Redis, settings: Settings) -> set[str]:
    return {k async for k in redis.scan_iter(f"{settings.key_prefix}:connect-session:*")}


def auth(key: str = FULL) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_session_is_a_token_a_link_and_an_expiry(
    client: TestClient[Any, Any], fakes: Fakes
) -> None:
    before = time.time()
    answer = await new_session(client, FULL, "google", "user-42")

    assert set(answer) == {"token", "url", "expires_at"}
    assert len(answer["token"]) >= 43  # 256 bits
    # On the host of the integration's redirect_uri, so the binding cookie reaches it.
    callback = urlsplit(fakes.callback)
    link = urlsplit(answer["url"])
    assert (link.scheme, link.netloc, link.path) == (
        callback.scheme, callback.netloc, "/connect/google"
    )  # fmt: skip
    assert parse_qs(link.query) == {"session": [answer["token"]]}
    assert answer["expires_at"].endswith("Z")
    expires = datetime.fromisoformat(answer["expires_at"]).timestamp()
    assert before + 1800 - 1 <= expires <= time.time() + 1800 + 1


async def test_the_session_ttl_is_a_setting(settings: Settings, fakes: Fakes, redis: Redis) -> None:
    before = await stored_sessions(redis, settings)
    async with serving(settings, api_keys=(FULL,), connect_session_ttl_seconds=60) as short:
        answer = await new_session(short, FULL, "generic", "user-42")
    expires = datetime.fromisoformat(answer["expires_at"]).timestamp()
    assert time.time() + 55 <= expires <= time.time() + 60
    (created,) = await stored_sessions(redis, settings) - before
    assert 0 < await redis.ttl(created) <= 60


@pytest.mark.parametrize(
    ("headers", "integration", "status", "error"),
    [
        ({}, "google", 401, "unauthorized"),
        ({"Authorization": "Bearer not-a-key-0123456789"}, "google", 401, "unauthorized"),
        (auth(LIMITED), "google", 403, "forbidden"),  # the key is limited to generic
        (auth(LIMITED), "nope", 403, "forbidden"),  # says nothing about what exists
        (auth(), "nope", 404, "not_found"),
    ],
)
async def test_only_a_key_allowed_the_integration_creates_a_session(
    client: TestClient[Any, Any], headers: dict[str, str], integration: str, status: int,
    error: str, redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    before = await stored_sessions(redis, settings)
    response = await client.post(
        "/api/connect-sessions",
        json={"integration": integration, "connection_id": "u1"},
        headers=headers,
    )
    assert response.status == status
    assert (await response.json())["error"] == error
    assert await stored_sessions(redis, settings) == before


async def test_a_limited_key_creates_sessions_for_its_integration(
    client: TestClient[Any, Any],
) -> None:
    answer = await new_session(client, LIMITED, "generic", "user-42")
    assert "/connect/generic?" in answer["url"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"\xff\xfe\x00", "body"),
        (b"[1, 2]", "body"),
        (b"[" * 5000 + b"]" * 5000, "body"),
        (json.dumps({"integration": "google", "connection_id": "a/../b"}).encode(),
         "connection_id"),
        (json.dumps({"integration": "google", "connection_id": "u1",
                     "return_to": "https://elsewhere.example/"}).encode(), "return_to"),
        (json.dumps({"integration": "google", "connection_id": "u1",
                     "end_user": {"id": "1", "email": "nope"}}).encode(), "end_user.email"),
    ],
)  # fmt: skip
async def test_a_bad_body_is_a_400_naming_the_field(
    client: TestClient[Any, Any], body: bytes, field: str
) -> None:
    response = await client.post(
        "/api/connect-sessions",
        data=body,
        headers={**auth(), "Content-Type": "application/json; charset=bogus"},
    )
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"] == "bad_request" and answer["field"] == field
    assert answer["message"].startswith(field)


async def test_a_session_carries_its_connection_return_to_and_end_user_into_the_flow(
    client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    end_user = {"id": "42", "email": "ada@example.com", "display_name": "Ada Lovelace"}
    answer = await new_session(
        client, FULL, "google", "user-42", return_to="https://app.example.com/done",
        end_user=end_user,
    )  # fmt: skip
    async with browser() as session:
        opened = await open_link(session, client, answer["url"])
        assert opened.status == 302
        state = parse_qs(urlsplit(opened.headers["Location"]).query)["state"][0]
        cookie = opened.cookies[next(iter(opened.cookies))]

    raw = await redis.get(Keys(settings.key_prefix, settings.redis_shards).pending(state))
    pending = json.loads(cast(str, raw))
    assert pending["connection_id"] == "user-42"
    assert pending["return_to"] == "https://app.example.com/done"
    assert pending["end_user"] == end_user
    assert pending["browser_binding"] == hashlib.sha256(cookie.value.encode()).hexdigest()
    assert cookie.value not in cast(str, raw)
    # The cookie only goes back to the callback, only over the top-level redirect, and no
    # script reads it (RFC 6265bis SameSite=Lax; HttpOnly).
    assert cookie.key.startswith("tokenlife_flow_")
    assert cookie["path"] == "/oauth/callback" and cookie["httponly"] is True
    assert cookie["samesite"] == "Lax" and int(cookie["max-age"]) == 600
    assert not cookie["secure"]  # plain http here; https gets Secure


@pytest.mark.parametrize(
    ("redirect_uri", "link"),
    [
        ("https://tokens.example.com/oauth/callback",
         "https://tokens.example.com/connect/crm?session=T0KEN"),
        ("https://example.com/tokenlife/oauth/callback",
         "https://example.com/tokenlife/connect/crm?session=T0KEN"),
        ("https://example.com/elsewhere", "https://example.com/connect/crm?session=T0KEN"),
    ],
)  # fmt: skip
def test_the_link_is_on_the_host_and_prefix_of_the_redirect_uri(
    redirect_uri: str, link: str
) -> None:
    integration = cast(Integration, SimpleNamespace(name="crm", redirect_uri=redirect_uri))
    assert connect_link(integration, "T0KEN") == link


async def test_a_head_request_does_not_spend_the_session(client: TestClient[Any, Any]) -> None:
    """Link checkers probe with HEAD; the user's GET still works afterwards."""
    answer = await new_session(client, FULL, "generic", "user-42")
    async with browser() as session:
        async with session.head(local(client, answer["url"]), allow_redirects=False) as probe:
            assert probe.status == 200 and "Set-Cookie" not in probe.headers
        assert (await open_link(session, client, answer["url"])).status == 302
        assert (await open_link(session, client, answer["url"])).status == 401
