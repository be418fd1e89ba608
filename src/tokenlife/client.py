"""A client for the HTTP API (docs/api.md), for apps that run apart from tokenlife.

    async with TokenlifeClient("https://tokens.internal", api_key) as client:
        token = await client.access_token("google-drive", "user-42")

Answers are mapped onto the error tree of `tokenlife.errors`, so code written against the
in-process `Tokenlife` catches the same classes:

    400, 401, 403, 409 other, 413  UsageError (the key is wrong or the call is)
    404                            UnknownIntegrationError or UnknownConnectionError
    409 reauthorization_required   ReauthorizationRequiredError
    409 undecryptable              DecryptionError (check TOKENLIFE_ENCRYPTION_KEYS)
    429, 502, 503, 504, refused,   TransientError: retry it
    reset, timed out
    anything else                  TokenlifeError

Neither the API key nor a token value appears in an error, a message or a repr.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from tokenlife.errors import (
    DecryptionError,
    ReauthorizationRequiredError,
    TokenlifeError,
    TransientError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.models import AccessToken

__all__ = ["AccessToken", "ConnectSession", "TokenlifeClient", "error_for"]


@dataclass(frozen=True, slots=True)
class ConnectSession:
    """A one-time link for one user and one connection (POST /api/connect-sessions).
    Send the user's browser to `url`; it works once, until `expires_at`."""

    token: str = field(repr=False)
    url: str = field(repr=False)  # holds the token
    expires_at: datetime


_USAGE = frozenset({400, 401, 403, 409, 413})
_TRANSIENT = frozenset({429, 502, 503, 504})


class TokenlifeClient:
    """Opened on the caller's event loop; use `async with`, or pass a `session` you close."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise UsageError(f"base_url must be an http(s) URL without a query, not {base_url!r}")
        if not api_key:
            raise UsageError("api_key is empty")
        if timeout <= 0:
            raise UsageError("timeout must be positive")
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"TokenlifeClient({self._base!r})"

    async def __aenter__(self) -> TokenlifeClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session this client opened; a session passed in stays open."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def integrations(self) -> list[dict[str, Any]]:
        """The integrations this key may use: name, provider, scopes."""
        body = await self._api("GET", "/api/integrations")
        return list(body["integrations"])

    async def connections(
        self, integration: str | None = None, status: str | None = None, limit: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """Every connection's metadata, filtered, fetched `limit` at a time."""
        params = {"limit": str(limit)}
        if integration is not None:
            params["integration"] = integration
        if status is not None:
            params["status"] = status
        cursor: str | None = None
        while True:
            page = params if cursor is None else {**params, "cursor": cursor}
            body = await self._api("GET", "/api/connections", params=page)
            for item in body["connections"]:
                yield item
            cursor = body.get("next_cursor")
            if cursor is None:
                return

    async def connection(self, integration: str, connection_id: str) -> dict[str, Any]:
        """One connection's metadata: status, expiry, next refresh, last error."""
        body: dict[str, Any] = await self._api("GET", _path(integration, connection_id))
        return body

    async def access_token(self, integration: str, connection_id: str) -> AccessToken:
        """A token valid for at least the server's leeway; refreshed first when needed.

        `expires_at` is Unix time in seconds, as from the in-process `Tokenlife` (the
        API's ISO 8601 string, parsed), so code works the same against either."""
        where = (integration, connection_id)
        body = await self._api("POST", _path(*where, "token"), connection=where)
        try:
            expires_at = body["expires_at"]
            return AccessToken(
                access_token=str(body["access_token"]),
                token_type=str(body["token_type"]),
                expires_at=None if expires_at is None else _unix_time(expires_at),
            )
        except (KeyError, TypeError, ValueError):
            # Name no values: the body holds the token.
            raise TokenlifeError(
                "the token answer lacks access_token, token_type or expires_at"
            ) from None

    async def refresh(self, integration: str, connection_id: str) -> None:
        """Queue a refresh for the worker now; returns once it is queued (202). Raises
        ReauthorizationRequiredError when the user has to connect again, UsageError when
        the connection has no refresh token (409 `no_refresh_token`)."""
        where = (integration, connection_id)
        await self._api("POST", _path(*where, "refresh"), expect=202, connection=where)

    async def delete(self, integration: str, connection_id: str) -> dict[str, Any]:
        """Revoke where the provider can, then forget: {deleted, revoked,
        revocation_supported, revocation_reason, revocation_error}."""
        body: dict[str, Any] = await self._api("DELETE", _path(integration, connection_id))
        return body

    async def create_connect_session(
        self,
        integration: str,
        connection_id: str,
        return_to: str | None = None,
        end_user: Mapping[str, str] | None = None,
    ) -> ConnectSession:
        """A one-time link that lets one user connect an account as `connection_id`.

        `return_to` must start with a prefix of TOKENLIFE_API_RETURN_TO_ALLOWED; `end_user`
        ({id, email, display_name}, id required) is kept with the authorization."""
        body: dict[str, Any] = {"integration": integration, "connection_id": connection_id}
        if return_to is not None:
            body["return_to"] = return_to
        if end_user is not None:
            body["end_user"] = dict(end_user)
        answer = await self._api("POST", "/api/connect-sessions", json_body=body, expect=201)
        try:
            return ConnectSession(
                token=str(answer["token"]),
                url=str(answer["url"]),
                expires_at=datetime.fromisoformat(str(answer["expires_at"])),
            )
        except (KeyError, ValueError):
            # Name no values: the body holds the token.
            raise TokenlifeError(
                "the connect-session answer lacks token, url or expires_at"
            ) from None

    async def ready(self) -> dict[str, Any]:
        """The readiness checks; a service that is not ready answers `{"ready": false, ...}`."""
        status, body, headers = await self._send("GET", "/readyz", authorized=False)
        if status in (200, 503) and isinstance(body, dict) and "ready" in body:
            return body
        raise error_for(status, body, headers)

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        expect: int = 200,
        connection: tuple[str, str] | None = None,
    ) -> Any:
        status, body, headers = await self._send(method, path, params=params, json_body=json_body)
        if status != expect:
            raise error_for(status, body, headers, connection)
        if not isinstance(body, dict):
            raise TokenlifeError(f"{method} {path}: HTTP {status} without a JSON object")
        return body

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        authorized: bool = True,
    ) -> tuple[int, Any, Mapping[str, str]]:
        if self._session is None:
            raise UsageError("use `async with TokenlifeClient(...)` or pass a session")
        headers = {"Authorization": f"Bearer {self._api_key}"} if authorized else {}
        try:
            async with self._session.request(
                method, URL(self._base + path, encoded=True), params=params, headers=headers,
                json=json_body, timeout=self._timeout, allow_redirects=False,
                raise_for_status=False,
            ) as response:  # fmt: skip
                text = await response.text()
                status, answer_headers = response.status, response.headers
        except TimeoutError:
            raise TransientError(
                f"{method} {path}: no answer within {self._timeout.total} s"
            ) from None
        except aiohttp.ClientError as exc:
            # `from None`: aiohttp's exceptions can carry the request and its headers.
            raise TransientError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return status, body, answer_headers


def error_for(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    connection: tuple[str, str] | None = None,
) -> TokenlifeError:
    """The error for an answer that was not the one expected, from its `{error, message}`."""
    fields = body if isinstance(body, dict) else {}
    code = str(fields.get("error", "")) or None
    message = str(fields.get("message", "")) or None
    described = f"tokenlife answered HTTP {status}" + (f" {code}: {message}" if code else "")
    if status == 404 and code == "not_found" and message is not None:
        # The server names the missing thing only in its message (web/app.py).
        missing = message.startswith("no integration")
        return (UnknownIntegrationError if missing else UnknownConnectionError)(message)
    if status == 409 and code == "reauthorization_required" and connection is not None:
        reason = fields.get("last_error") or fields.get("status") or message or code
        return ReauthorizationRequiredError(*connection, str(reason))
    if status == 409 and code == "undecryptable":
        return DecryptionError(described)
    if status in _USAGE:
        return UsageError(described)
    if status in _TRANSIENT:
        error = TransientError(described)
        error.retry_after = _seconds(headers.get("Retry-After"))
        return error
    return TokenlifeError(described)


def _unix_time(value: object) -> float:
    """An API timestamp (ISO 8601 UTC, docs/api.md) as Unix time; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError("not an ISO 8601 string")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:  # the API always says UTC; never read one as local time
        raise ValueError("no time zone")
    return moment.timestamp()


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date (RFC 9110 §10.2.3): no hint rather than a guess


def _path(integration: str, connection_id: str, action: str | None = None) -> str:
    # Quoted whole: a connection id may hold "/", "?" or "#".
    path = f"/api/connections/{quote(integration, safe='')}/{quote(connection_id, safe='')}"
    return path if action is None else f"{path}/{action}"
