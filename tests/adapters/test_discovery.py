"""fetch_discovery_document and endpoints_from against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tokenlife.adapters.discovery import endpoints_from, fetch_discovery, fetch_discovery_document
from tokenlife.errors import ConfigurationError

TIMEOUT = 5.0
WELL_KNOWN = "/.well-known/openid-configuration"

# Given the issuer's base URL, the answer to the discovery request.
Respond = Callable[[str], web.Response]


@asynccontextmanager
async def issuer(respond: Respond) -> AsyncIterator[str]:
    """An issuer on a free port of 127.0.0.1; yields its URL."""

    async def handler(request: web.Request) -> web.Response:
        return respond(str(request.url.origin()))

    app = web.Application()
    app.router.add_get(WELL_KNOWN, handler)
    async with TestServer(app, host="127.0.0.1") as server:
        yield f"http://127.0.0.1:{server.port}"


def document(base: str, **changes: Any) -> web.Response:
    fields: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "response_types_supported": ["code"],
    }
    fields.update(changes)
    return web.json_response({k: v for k, v in fields.items() if v is not None})


async def discover(http: aiohttp.ClientSession, base: str, timeout: float) -> tuple[str, str]:
    """What start-up does with an issuer: fetch the document, read its endpoints."""
    return endpoints_from(base, await fetch_discovery_document(http, base, timeout))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_good_document_gives_both_endpoints(http: aiohttp.ClientSession) -> None:
    async with issuer(document) as base:
        endpoints = await discover(http, base, TIMEOUT)

    assert endpoints == (f"{base}/authorize", f"{base}/token")


async def test_the_issuer_must_match_exactly_trailing_slash_included(
    http: aiohttp.ClientSession,
) -> None:
    # OIDC Discovery §4.3: the document's issuer is compared as a string.
    async with issuer(document) as base:
        with pytest.raises(ConfigurationError, match="trailing slash"):
            await discover(http, base + "/", TIMEOUT)


async def test_an_issuer_mismatch_is_a_configuration_error(http: aiohttp.ClientSession) -> None:
    async with issuer(lambda base: document(base, issuer="https://evil.example")) as base:
        with pytest.raises(ConfigurationError, match="does not match"):
            await discover(http, base, TIMEOUT)


@pytest.mark.parametrize(
    "changes",
    [
        {"token_endpoint": None},
        {"authorization_endpoint": None},
        {"token_endpoint": "/token"},  # relative: not a URL we can post to
        {"token_endpoint": 42},
    ],
    ids=["no-token-endpoint", "no-authorization-endpoint", "relative", "not-a-string"],
)
async def test_a_missing_or_bad_endpoint_is_a_configuration_error(
    http: aiohttp.ClientSession, changes: dict[str, Any]
) -> None:
    async with issuer(lambda base: document(base, **changes)) as base:
        with pytest.raises(ConfigurationError, match="token_endpoint are required"):
            await discover(http, base, TIMEOUT)


async def test_a_404_is_a_configuration_error(http: aiohttp.ClientSession) -> None:
    async with issuer(lambda base: web.Response(status=404, text="not found")) as base:
        with pytest.raises(ConfigurationError, match="HTTP 404"):
            await discover(http, base, TIMEOUT)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>sign in</html>", "did not return JSON"),
        ('{"issuer": ', "did not return JSON"),
        ("[]", "not return a JSON object"),
    ],
    ids=["html", "truncated-json", "json-array"],
)
async def test_a_body_that_is_not_a_json_object_is_a_configuration_error(
    http: aiohttp.ClientSession, body: str, message: str
) -> None:
    async with issuer(lambda base: web.Response(text=body, content_type="text/html")) as base:
        with pytest.raises(ConfigurationError, match=message):
            await discover(http, base, TIMEOUT)


async def test_an_oversized_document_is_a_configuration_error(
    http: aiohttp.ClientSession,
) -> None:
    def padded(base: str) -> web.Response:
        return web.Response(
            text=json.dumps({"issuer": base, "pad": "x" * 256 * 1024}),
            content_type="application/json",
        )

    async with issuer(padded) as base:
        with pytest.raises(ConfigurationError, match="document over"):
            await discover(http, base, TIMEOUT)


async def test_an_unreachable_issuer_is_a_configuration_error(
    http: aiohttp.ClientSession,
) -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, then released
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    with pytest.raises(ConfigurationError, match="failed"):
        await discover(http, f"http://127.0.0.1:{port}", TIMEOUT)


async def test_cache_control_over_several_header_lines_is_read_as_one_list(
    http: aiohttp.ClientSession,
) -> None:
    def respond(base: str) -> web.Response:
        response = document(base)
        response.headers.add("Cache-Control", "max-age=600")
        response.headers.add("Cache-Control", "no-store")
        return response

    async with issuer(respond) as base:
        discovered = await fetch_discovery(http, base, TIMEOUT, 1000.0)

    assert discovered.fresh_until == 1000.0  # no-store on the second line: not reused
