"""The account endpoint over real HTTP (the generic fake's `/user`): method, header,
bounded reads and timeouts, each failure a typed error that names no token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.fakes.base import Reply
from tests.support import Fakes
from tokenlife.adapters.account_endpoint import fetch_account_id
from tokenlife.core.account import AccountEndpoint
from tokenlife.errors import (
    EndpointTimeoutError,
    InvalidAccountResponseError,
    RateLimitedError,
    ServerError,
    TokenlifeError,
    TransportError,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def answers_normally(fakes: Fakes) -> Iterator[None]:
    yield
    fakes.generic.script_account()


def token_for(fakes: Fakes, user: str) -> str:
    body = fakes.generic.mint("generic-client", ("profile",), 3600)
    with fakes.generic.lock:
        fakes.generic.access_users[body["access_token"]] = user
    return str(body["access_token"])


async def test_a_post_endpoint_is_called_without_a_body_or_a_content_type(
    fakes: Fakes, http: aiohttp.ClientSession
) -> None:
    # Dropbox's users/get_current_account: an RPC endpoint without parameters.
    endpoint = AccountEndpoint(f"{fakes.generic.base_url}/user", "id", "POST")
    token, seen = token_for(fakes, "judy"), len(fakes.generic.account_requests)

    assert await fetch_account_id(http, endpoint, token, 5) == str(fakes.generic.account_id("judy"))

    (request,) = fakes.generic.account_requests[seen:]
    assert (request["method"], request["body"], request["content_type"]) == ("POST", "", "")
    assert request["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=502, body=b"bad gateway"), ServerError),
        (Reply(status=429, body=b""), RateLimitedError),
        (Reply(status=403, body=b'{"message": "scope"}'), InvalidAccountResponseError),
        (Reply(status=302, body=b"", headers={"Location": "https://evil.example/"}),
         InvalidAccountResponseError),
        (Reply(status=200, body=b'{"id": 1' + b"0" * 300 * 1024 + b"}"),
         InvalidAccountResponseError),
        (Reply(status=200, body=b'{"id": true}'), InvalidAccountResponseError),
    ],
)  # fmt: skip
async def test_each_failure_is_a_typed_error_without_the_token(
    fakes: Fakes, http: aiohttp.ClientSession, reply: Reply, error: type[TokenlifeError]
) -> None:
    endpoint = AccountEndpoint(f"{fakes.generic.base_url}/user", "id")
    token = token_for(fakes, "ken")
    fakes.generic.script_account(reply)

    with pytest.raises(error) as caught:
        await fetch_account_id(http, endpoint, token, 5)
    assert token not in str(caught.value)


async def test_a_slow_endpoint_times_out(fakes: Fakes, http: aiohttp.ClientSession) -> None:
    endpoint = AccountEndpoint(f"{fakes.generic.base_url}/user", "id")
    fakes.generic.script_account(Reply(delay=1.0))

    with pytest.raises(EndpointTimeoutError):
        await fetch_account_id(http, endpoint, token_for(fakes, "liz"), 0.2)


async def test_an_unreachable_endpoint_is_a_transport_error(
    http: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    endpoint = AccountEndpoint(f"http://127.0.0.1:{unused_tcp_port}/user", "id")

    with pytest.raises(TransportError):
        await fetch_account_id(http, endpoint, "at-not-a-real-token", 5)
