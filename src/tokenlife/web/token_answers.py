"""The bodies of the token routes: a token, and the 409 that says the user must connect
again. Every timestamp the API writes is ISO 8601 UTC with a `Z` (core.events.iso8601);
durations are whole seconds."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from tokenlife.adapters.connection_record import Connection
from tokenlife.core.events import iso8601
from tokenlife.core.policy import Status
from tokenlife.errors import ReauthorizationRequiredError
from tokenlife.services.access import AccessToken
from tokenlife.web.problems import problem


def token_answer(token: AccessToken, now: float) -> dict[str, Any]:
    """`expires_at` as every timestamp the API writes (docs/api.md), and `expires_in` as in
    RFC 6749 §5.1: whole seconds left, rounded down so an app never over-trusts it."""
    expires_in = None
    if token.expires_at is not None:
        expires_in = max(0, math.floor(token.expires_at - now))
    return {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_at": iso8601(token.expires_at),
        "expires_in": expires_in,
    }


def reauthorization_required(connection: Connection, message: str) -> web.Response:
    """The 409 of /token and /refresh alike: why, and the fixes the last alert named."""
    alert = dict(connection.last_alert or {})
    return problem(
        409, "reauthorization_required", message,
        status=connection.status.value, last_error=connection.last_error,
        diagnosis=alert.get("fixes", []), last_alert=alert or None,
    )  # fmt: skip


def refresh_refusal(connection: Connection, now: float) -> web.Response | None:
    """Why POST /refresh won't queue a refresh, or None to queue it. A connection the user
    must connect again gets the /token 409: a queued refresh that can't succeed would hide
    that. A degraded one with a refresh token is queued: a refresh may bring it back."""
    where = (connection.integration, connection.connection_id)
    if connection.status is Status.REAUTHORIZATION_REQUIRED:
        error = ReauthorizationRequiredError(*where, connection.last_error or "status")
        return reauthorization_required(connection, str(error))
    if connection.has_refresh_token:
        return None
    if connection.expires_at is not None and connection.expires_at <= now:
        # What /token says of the same connection (services/access.py).
        error = ReauthorizationRequiredError(*where, "access token expired, no refresh token")
        return reauthorization_required(connection, str(error))
    until = iso8601(connection.expires_at)
    return problem(
        409, "no_refresh_token",
        "this connection has no refresh token to use; its access token stays valid "
        + (f"until {until}" if until else "for as long as the provider allows")
        + ", then the user has to connect again",
        status=connection.status.value, expires_at=until,
    )  # fmt: skip
