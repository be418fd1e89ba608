"""What the clients refuse at construction, and what their errors for a request that got
no answer hold: never the API key, nor a password of the base URL, in a message, a repr,
a cause or a context."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tokenlife.client import AsyncClient, Client, calls
from tokenlife.client.http import request_failed
from tokenlife.errors import TransientError, TransportError, UsageError

KEY = "arguments-test-key-0123456789"
SECRET = "s3cr3t-Value"


@pytest.mark.parametrize(
    "api_key",
    [
        f"{SECRET}\n",  # read from a secret file with its newline
        f"{SECRET}\r\n",
        f"Bearer {SECRET}",
        f"k\u00e9y{SECRET}",  # escaped as a bare UnicodeEncodeError before
        f"{SECRET}\x00",
        "",
    ],
)
def test_a_key_that_is_not_printable_ascii_is_refused_without_quoting_it(api_key: str) -> None:
    for cls in (Client, AsyncClient):
        with pytest.raises(UsageError, match="api_key") as raised:
            cls("http://127.0.0.1:9", api_key)
        assert SECRET not in str(raised.value) and raised.value.__context__ is None


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("ftp://tokens.internal", True),
        ("https://tokens.internal?x=1", True),
        ("https://tokens.internal/?", True),  # an empty query is one too
        ("https://tokens.internal/#top", True),
        ("https://tokens.internal#", True),
        ("https:///no-host", True),
        ("https://tokens.internal:99999999", True),
        ("https://[::1", True),  # httpx.InvalidURL
        ("https://tokens .internal", True),
        (f"https://ops:{SECRET}@tokens.internal", False),  # httpx would send Basic auth
        (f"https://{SECRET}@tokens.internal", False),
    ],
)
def test_a_bad_base_url_is_refused_and_one_with_credentials_never_quoted(
    base_url: str, shown: bool
) -> None:
    for cls in (Client, AsyncClient):
        with pytest.raises(UsageError, match="base_url") as raised:
            cls(base_url, KEY)
        assert (base_url in str(raised.value)) is shown
        assert SECRET not in str(raised.value)
        assert raised.value.__context__ is None and raised.value.__cause__ is None


def test_a_path_prefix_is_kept() -> None:
    with Client("https://example.com/tokenlife/", KEY) as client:
        assert repr(client) == "Client('https://example.com/tokenlife')"


def test_httpx_text_that_may_quote_a_header_is_left_out() -> None:
    call = calls.integrations()
    refused = httpx.LocalProtocolError(f"Illegal header value b'Bearer {SECRET}\\n'")
    error = request_failed(refused, call)
    assert isinstance(error, TransportError)
    assert str(error) == "GET /api/integrations: LocalProtocolError"
    # The operating system's text says what happened and holds no header.
    reset = request_failed(httpx.ReadError("[Errno 104] Connection reset by peer"), call)
    assert str(reset) == "GET /api/integrations: ReadError: [Errno 104] Connection reset by peer"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_no_chain(error: BaseException) -> None:
    # httpx's exception holds the request, and the request the Authorization header.
    assert error.__cause__ is None and error.__context__ is None
    assert KEY not in str(error)


def test_a_failed_request_carries_neither_cause_nor_context() -> None:
    with (
        Client(f"http://127.0.0.1:{closed_port()}", KEY) as client,
        pytest.raises(TransientError) as raised,
    ):
        client.integrations()
    check_no_chain(raised.value)


async def test_a_failed_async_request_carries_neither_cause_nor_context() -> None:
    async with AsyncClient(f"http://127.0.0.1:{closed_port()}", KEY) as client:
        with pytest.raises(TransientError) as raised:
            await client.integrations()
    check_no_chain(raised.value)


@pytest.mark.parametrize(
    ("wait", "types", "expected"),
    [
        (float("nan"), None, "wait"),
        (float("inf"), None, "wait"),
        (31, None, "wait"),
        (-1, None, "wait"),
    ],
)
def test_an_events_call_refuses_a_wait_the_server_would(
    wait: float, types: Any, expected: str
) -> None:
    with pytest.raises(UsageError, match=expected):
        calls.events(None, None, wait, types)


def test_no_types_is_every_type() -> None:
    assert calls.events("0", None, 0, []).params == {"after": "0"}
