"""The bodies of the token routes: a token, and the 409 that says the user must connect
again. Every timestamp the API writes is ISO 8601 UTC with a `Z` (core.events.iso8601);
durations are whole seconds."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from tokenlife.adapters.connection_record import Connection
from tokenlife.core.events import iso8601
from tokenlife.core.refresh_refusal import RefreshRefusal, RefusalKind
from tokenlife.errors import ReauthorizationRequiredError
from tokenlife.models import AccessToken
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


def refusal_answer(connection: Connection, refusal: RefreshRefusal) -> web.Response:
    """The 409 of POST /refresh (core.refresh_refusal decides): a connection the user must
    connect again gets the /token 409; one without a refresh token says until when its
    access token works."""
    where = (connection.integration, connection.connection_id)
    if refusal.kind is RefusalKind.REAUTHORIZATION_REQUIRED:
        error = ReauthorizationRequiredError(*where, refusal.reason)
        return reauthorization_required(connection, str(error))
    return problem(
        409, refusal.kind.value, refusal.reason,
        status=connection.status.value, expires_at=iso8601(connection.expires_at),
    )  # fmt: skip
