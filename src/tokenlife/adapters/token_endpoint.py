"""POST to a token endpoint over aiohttp and hand the answer to the pure parser."""

from __future__ import annotations

import base64
import email.utils
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import unquote_plus, urlencode

import aiohttp

from tokenlife.core.grants import TokenRequest
from tokenlife.core.tokens import TokenSet, parse_token_response
from tokenlife.errors import (
    EndpointTimeoutError,
    InvalidResponseError,
    OAuthError,
    ServerError,
    TransportError,
)
from tokenlife.log_redaction import REDACTED, SECRET_NAMES

# No token response comes near this; a bigger body is a misconfigured endpoint or an
# attack on our memory, so stop reading instead of buffering it.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    retry_after: str | None
    body: bytes


async def post_form(
    session: aiohttp.ClientSession, request: TokenRequest, timeout: float, endpoint: str
) -> _Answer:
    """POST the form; transport failures become TransientErrors naming `endpoint`."""
    try:
        # Encoded here rather than by aiohttp's FormData, which builds a multipart writer
        # for every request; the body is the same application/x-www-form-urlencoded.
        async with session.post(
            request.url,
            data=urlencode(request.form).encode("ascii"),
            headers={**request.headers, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            body = await read_limited(response, MAX_BODY_BYTES)
            if body is None:
                raise InvalidResponseError(
                    f"HTTP {response.status} body is larger than {MAX_BODY_BYTES} bytes"
                )
            return _Answer(
                response.status,
                response.headers.get("Content-Type", ""),
                response.headers.get("Retry-After"),
                body,
            )
    except TimeoutError:
        raise EndpointTimeoutError(f"{endpoint} did not answer within {timeout:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        # Never connected: the provider did not see the request.
        error = TransportError(f"{endpoint} unreachable: {type(exc).__name__}: {exc}")
        error.request_sent = False
        raise error from None
    except aiohttp.ClientError as exc:
        # The exception text names host and OS error only; the form is never in it.
        raise TransportError(f"{endpoint} unreachable: {type(exc).__name__}: {exc}") from None


async def post_token_request(
    session: aiohttp.ClientSession, request: TokenRequest, timeout: float, now: float
) -> TokenSet:
    answer = await post_form(session, request, timeout, "token endpoint")
    retry_after = parse_retry_after(answer.retry_after, now)
    try:
        return parse_token_response(
            answer.status, answer.content_type, answer.body, now, retry_after
        )
    except OAuthError as exc:
        forget_echo(exc, request)
        raise


def forget_echo(exc: OAuthError, request: TokenRequest) -> None:
    """Take what we sent (the code, the refresh token, the client secret) out of the
    provider's error description: it goes into events, alerts, webhooks and logs, and some
    providers repeat the presented value ("refresh token rt-… was revoked")."""
    if not exc.description:
        return
    sent = [v for k, v in request.form.items() if k in SECRET_NAMES and len(v) >= 8]
    sent += _basic_secret(request.headers.get("Authorization", ""))
    cleaned = exc.description
    for value in sorted(sent, key=len, reverse=True):
        cleaned = cleaned.replace(value, REDACTED)
    if cleaned != exc.description:
        exc.description = cleaned
        exc.args = (f"{exc.error}: {cleaned}",)  # what str(exc) shows (errors.OAuthError)


def _basic_secret(header: str) -> list[str]:
    """client_secret_basic sends the secret in the header (RFC 6749 §2.3.1: form-encoded,
    then base64, RFC 7617): the header as sent, and the secret in both spellings."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return []
    try:
        _, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return [encoded]
    return [v for v in (encoded, secret, unquote_plus(secret)) if len(v) >= 8]


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `limit` (the rest is never read)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" forms; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


async def post_revocation(
    session: aiohttp.ClientSession, request: TokenRequest, timeout: float
) -> None:
    """RFC 7009 §2.2: 200 means revoked (or already invalid); anything else is an error."""
    answer = await post_form(session, request, timeout, "revocation endpoint")
    if answer.status >= 500:
        raise ServerError(answer.status)
    if answer.status != 200:
        raise InvalidResponseError(f"revocation endpoint answered HTTP {answer.status}")
