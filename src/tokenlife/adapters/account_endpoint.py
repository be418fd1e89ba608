"""Ask a provider's "current user" API whose a new access token is, over aiohttp."""

from __future__ import annotations

import aiohttp

from tokenlife.adapters.token_endpoint import read_limited
from tokenlife.core.account import AccountEndpoint, parse_account_body
from tokenlife.errors import (
    EndpointTimeoutError,
    InvalidAccountResponseError,
    RateLimitedError,
    ServerError,
    TransportError,
)

# A user profile is a few kilobytes; Dropbox's with team policies stays well under this.
MAX_ACCOUNT_BODY_BYTES = 256 * 1024


async def fetch_account_id(
    session: aiohttp.ClientSession, endpoint: AccountEndpoint, access_token: str, timeout: float
) -> str:
    """The account id the endpoint answers for `access_token`.

    Raises a TransientError (timeout, unreachable, 5xx, 429) or InvalidAccountResponseError
    (another status, not JSON, no id where the catalogue says). The token travels only in
    the Authorization header (RFC 6750 §2.1); no message names it or the body's values.
    """
    try:
        # No body and no Content-Type: Dropbox's RPC endpoints take a POST without
        # parameters as exactly that, and refuse both a JSON Content-Type with an empty
        # body and the application/octet-stream aiohttp would add to an empty POST.
        async with session.request(
            endpoint.method,
            endpoint.url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            skip_auto_headers=("Content-Type",),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            status = response.status
            body = await read_limited(response, MAX_ACCOUNT_BODY_BYTES)
    except TimeoutError:
        raise EndpointTimeoutError(
            f"account endpoint did not answer within {timeout:g} s"
        ) from None
    except aiohttp.ClientError as exc:
        # The exception text names host and OS error only; headers are never in it.
        raise TransportError(f"account endpoint unreachable: {type(exc).__name__}") from None
    if status == 429:
        raise RateLimitedError(None)
    if status >= 500:
        raise ServerError(status)
    if status != 200:
        raise InvalidAccountResponseError(f"account endpoint answered HTTP {status}")
    if body is None:
        raise InvalidAccountResponseError(
            f"account endpoint's answer is larger than {MAX_ACCOUNT_BODY_BYTES} bytes"
        )
    return parse_account_body(endpoint, body)
