"""The browser side of the connect flow, for tests against the app on 127.0.0.1: an app
creates a connect session, a browser (its own cookie jar) opens the link, the fake
provider consents, and the browser lands on our callback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app


@asynccontextmanager
async def serving(settings: Settings, **update: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """The app over a real Runtime on 127.0.0.1, with `update` applied to the settings."""
    runtime = await Runtime.open(await load_config(settings.model_copy(update=update)))
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
            yield client
    finally:
        await runtime.close()


async def new_session(
    client: TestClient[Any, Any], key: str, integration: str, connection_id: str, **body: Any
) -> dict[str, Any]:
    """POST /api/connect-sessions as the app; the 201 body."""
    response = await client.post(
        "/api/connect-sessions",
        json={"integration": integration, "connection_id": connection_id, **body},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status == 201, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def local(client: TestClient[Any, Any], url: str) -> URL:
    """The same path and query on the server under test (the link names the public host,
    the redirect_uri's)."""
    parts = urlsplit(url)
    return client.make_url(parts.path + (f"?{parts.query}" if parts.query else ""))


@asynccontextmanager
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser of its own: cookies kept (also for 127.0.0.1), redirects not followed."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def open_link(
    session: aiohttp.ClientSession, client: TestClient[Any, Any], url: str
) -> aiohttp.ClientResponse:
    """GET the connect link; the response, read."""
    async with session.get(local(client, url), allow_redirects=False) as response:
        await response.read()
        return response


async def consent(location: str, **user: str) -> dict[str, str]:
    """At the fake provider: consent at once (login_hint=NAME, deny="1"); the query it
    sends the browser back to the callback with."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(location + "&" + urlencode(user), allow_redirects=False) as at_provider,
    ):
        assert at_provider.status == 302, await at_provider.text()
        query = urlsplit(at_provider.headers["Location"]).query
    return {k: v[0] for k, v in parse_qs(query).items()}


async def land(
    session: aiohttp.ClientSession, client: TestClient[Any, Any], query: dict[str, str]
) -> tuple[int, dict[str, str], str]:
    """The browser arrives at /oauth/callback with the provider's query."""
    url = client.make_url("/oauth/callback?" + urlencode(query))
    async with session.get(url, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.text()


async def browser_flow(
    client: TestClient[Any, Any], key: str, integration: str, connection_id: str,
    *, deny: bool = False, **body: Any,
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    """The whole flow in one browser, as a user goes through it."""
    session_ = await new_session(client, key, integration, connection_id, **body)
    async with browser() as session:
        opened = await open_link(session, client, session_["url"])
        assert opened.status == 302, opened.status
        user = {"login_hint": connection_id, **({"deny": "1"} if deny else {})}
        query = await consent(opened.headers["Location"], **user)
        return await land(session, client, query)
