"""post_token_request against real HTTP servers on 127.0.0.1, and the Retry-After parser."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tokenlife.adapters.token_endpoint import (
    MAX_BODY_BYTES,
    forget_echo,
    parse_retry_after,
    post_token_request,
)
from tokenlife.core.client_auth import client_secret_basic
from tokenlife.core.grants import TokenRequest
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import (
    EndpointTimeoutError,
    InvalidClientError,
    InvalidGrantError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
    TransportError,
)

NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
TIMEOUT = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    method: str
    headers: dict[str, str]
    form: dict[str, str]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A token endpoint on a free port of 127.0.0.1; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/token", handler)  # any method: a followed 302 arrives as GET
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/token"))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def token_request(url: str) -> TokenRequest:
    return TokenRequest(
        url=url,
        form={"grant_type": "authorization_code", "code": "the-code"},
        headers={"Accept": "application/json"},
    )


def json_body(size: int) -> bytes:
    """A valid token response padded to exactly `size` bytes."""
    head, tail = b'{"access_token":"at","token_type":"Bearer","pad":"', b'"}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size
    return body


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_200_json_answer_becomes_a_token_set(http: aiohttp.ClientSession) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "access_token": "at",
                "token_type": "Bearer",
                "expires_in": 3599,
                "refresh_token": "rt",
                "scope": "openid email",
            }
        )

    async with serve(ok) as url:
        tokens = await post_token_request(http, token_request(url), TIMEOUT, NOW)

    assert tokens == TokenSet(
        access_token="at",
        token_type="Bearer",
        refresh_token="rt",
        expires_at=NOW + 3599,
        lifetime_seconds=3599,
        lifetime_source="expires_in",
        granted_scopes=("openid", "email"),
    )


async def test_the_request_carries_the_form_and_headers(http: aiohttp.ClientSession) -> None:
    seen: list[Received] = []

    async def record(request: web.Request) -> web.Response:
        form = await request.post()
        seen.append(
            Received(
                method=request.method,
                headers=dict(request.headers),
                form={name: str(value) for name, value in form.items()},
            )
        )
        return web.json_response({"access_token": "at"})

    async with serve(record) as url:
        request = token_request(url)
        request.form.update(redirect_uri="http://127.0.0.1:9/cb", code_verifier="v" * 43)
        client_secret_basic("client id", "s3cret:&", request.form, request.headers)
        await post_token_request(http, request, TIMEOUT, NOW)

    assert len(seen) == 1
    received = seen[0]
    assert received.method == "POST"
    assert received.form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "http://127.0.0.1:9/cb",
        "code_verifier": "v" * 43,
    }
    assert received.headers["Authorization"] == request.headers["Authorization"]
    assert received.headers["Authorization"].startswith("Basic ")
    assert received.headers["Accept"] == "application/json"
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_a_redirect_is_not_followed(http: aiohttp.ClientSession) -> None:
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        if "followed" in request.query:
            followed.append(request.method)
            return web.json_response({"access_token": "at"})
        return web.Response(status=302, headers={"Location": "/token?followed=1"})

    async with serve(redirect) as url:
        with pytest.raises(InvalidResponseError):
            await post_token_request(http, token_request(url), TIMEOUT, NOW)

    assert followed == []


async def test_an_oauth_error_answer_raises_its_class(http: aiohttp.ClientSession) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "invalid_grant"}, status=400)

    async with serve(refuse) as url:
        with pytest.raises(InvalidGrantError):
            await post_token_request(http, token_request(url), TIMEOUT, NOW)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_one_mebibyte_is_an_invalid_response(
    http: aiohttp.ClientSession, framing: str
) -> None:
    body = json_body(MAX_BODY_BYTES + 1)  # valid JSON: only its size is wrong

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if framing == "content-length":
            response.content_length = len(body)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the client stops reading
            await response.write(body)
            await response.write_eof()
        return response

    async with serve(huge) as url:
        with pytest.raises(InvalidResponseError, match="larger than 1048576 bytes"):
            await post_token_request(http, token_request(url), TIMEOUT, NOW)


async def test_a_body_of_exactly_one_mebibyte_is_accepted(http: aiohttp.ClientSession) -> None:
    async def padded(request: web.Request) -> web.Response:
        return web.Response(body=json_body(MAX_BODY_BYTES), content_type="application/json")

    async with serve(padded) as url:
        tokens = await post_token_request(http, token_request(url), TIMEOUT, NOW)

    assert tokens.access_token == "at"


@pytest.mark.parametrize("size", [200, MAX_BODY_BYTES], ids=["small", "exactly-1-MiB"])
async def test_a_body_that_arrives_in_two_pieces_is_read_whole(
    http: aiohttp.ClientSession, size: int
) -> None:
    client_done = asyncio.Event()
    body = json_body(size)

    async def in_two_pieces(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await response.write(body[: size // 2])
            # The provider stalls mid-body. A client that parses what arrived so far is
            # done at once (and then gets the rest); one that reads to the end waits.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client_done.wait(), 0.2)
            await response.write(body[size // 2 :])
            await response.write_eof()
        return response

    async with serve(in_two_pieces) as url:
        try:
            tokens = await post_token_request(http, token_request(url), TIMEOUT, NOW)
        finally:
            client_done.set()

    assert tokens.access_token == "at"


async def test_a_slow_endpoint_raises_endpoint_timeout(http: aiohttp.ClientSession) -> None:
    reached, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        reached.set()
        await release.wait()  # the provider misbehaves until the test is done
        return web.json_response({"access_token": "at"})

    async with serve(hang) as url:
        try:
            with pytest.raises(EndpointTimeoutError):
                await post_token_request(http, token_request(url), 0.2, NOW)
            assert reached.is_set(), "the request never reached the server"
        finally:
            release.set()


async def test_a_closed_port_raises_transport_error(http: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{closed_port()}/token"

    with pytest.raises(TransportError):
        await post_token_request(http, token_request(url), TIMEOUT, NOW)


async def test_a_503_raises_server_error(http: aiohttp.ClientSession) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="<html>down for maintenance</html>")

    async with serve(unavailable) as url:
        with pytest.raises(ServerError) as raised:
            await post_token_request(http, token_request(url), TIMEOUT, NOW)

    assert raised.value.status == 503


async def test_a_429_raises_rate_limited_with_retry_after(http: aiohttp.ClientSession) -> None:
    async def slow_down(request: web.Request) -> web.Response:
        body = json.dumps({"error": "slow_down"})
        return web.Response(status=429, text=body, headers={"Retry-After": "7"})

    async with serve(slow_down) as url:
        with pytest.raises(RateLimitedError) as raised:
            await post_token_request(http, token_request(url), TIMEOUT, NOW)

    assert raised.value.retry_after == 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # IMF-fixdate, 30 s after NOW
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),  # obsolete RFC 850 form
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past: retry now
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 32 Oct 2015 07:28:30 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_ignores_non_ascii_digits() -> None:
    assert parse_retry_after("²", NOW) is None


def test_a_client_secret_sent_in_the_basic_header_is_taken_out_of_an_echo() -> None:
    secret = "s3cret/with+chars"
    header = "Basic " + base64.b64encode(f"client-1:{quote_plus(secret)}".encode()).decode()
    request = TokenRequest("https://idp.example/token", {"grant_type": "refresh_token"},
                           {"Authorization": header})  # fmt: skip
    exc = InvalidClientError(f"client secret {secret} is wrong ({header})")
    forget_echo(exc, request)
    assert secret not in str(exc) and header.split()[1] not in str(exc)
    assert "invalid_client" in str(exc)
