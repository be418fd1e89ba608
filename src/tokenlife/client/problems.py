"""The error for an answer of the HTTP API that was not the one asked for, decided by the
`error` code of its body (docs/api.md), never by its message text; by the HTTP status only
when the body names no code (a proxy's page, a wrong base URL)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from tokenlife.errors import (
    ConnectionBusyError,
    CorruptRecordError,
    DecryptionError,
    ForbiddenError,
    IntegrationUnavailableError,
    NoRefreshTokenError,
    ReauthorizationRequiredError,
    StorageUnavailableError,
    TokenlifeError,
    TransientError,
    UnauthorizedError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)

# The longest `Retry-After` believed, in seconds.
MAX_RETRY_AFTER = 3600.0
# What the server sends with a 503 that lacks Retry-After (web/app.py's default).
_DEFAULT_RETRY_SECONDS = 5.0


class Problem:
    """One error answer: its status, code, message and members, and the call's subject."""

    def __init__(
        self,
        status: int,
        body: Any,
        headers: Mapping[str, str],
        integration: str | None,
        connection_id: str | None,
        now: float,
    ) -> None:
        self.status = status
        self.fields: Mapping[str, Any] = body if isinstance(body, dict) else {}
        code = self.fields.get("error")
        self.code = code if isinstance(code, str) and code else None
        message = self.fields.get("message")
        self.message = message if isinstance(message, str) else ""
        self.retry_after = _retry_after(headers.get("Retry-After"), now)
        self.integration = integration
        self.connection_id = connection_id
        self.now = now

    @property
    def described(self) -> str:
        """`tokenlife answered HTTP 409 no_refresh_token: ...`; the server's messages name
        no token and no key (web/app.py)."""
        said = f" {self.code}: {self.message}" if self.code else ""
        return f"tokenlife answered HTTP {self.status}{said}"

    def where(self) -> tuple[str, str]:
        return (self.integration or "?", self.connection_id or "?")


def error_for(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    connection: tuple[str, str] | None = None,
    *,
    integration: str | None = None,
    connection_id: str | None = None,
    now: float | None = None,
) -> TokenlifeError:
    """The error for an answer with `status` and the JSON `body` (None when it was none).

    `integration` and `connection_id` are what the call was about (a 409 body doesn't
    repeat them); `now` (Unix time, the clock by default) dates an
    `integration_unavailable`'s next try and reads a `Retry-After` date. `connection`, an
    (integration, connection id) pair, is the 0.1 way to say the first two: deprecated."""
    if connection is not None:
        warnings.warn(
            "error_for(..., connection=(i, c)) is deprecated: pass integration=i, connection_id=c",
            DeprecationWarning,
            stacklevel=2,
        )
        integration = connection[0] if integration is None else integration
        connection_id = connection[1] if connection_id is None else connection_id
    now = time.time() if now is None else now
    problem = Problem(status, body, headers, integration, connection_id, now)
    build = _BY_CODE.get(problem.code or "")
    error = build(problem) if build is not None else _by_status(problem)
    error.api_status = status
    error.api_error = problem.code
    if isinstance(error, TransientError) and error.retry_after is None:
        error.retry_after = problem.retry_after
    return error


def _not_found(problem: Problem) -> TokenlifeError:
    # The server names the missing resource in a member of its own (docs/api.md).
    resource = problem.fields.get("resource")
    message = problem.message or problem.described
    if resource == "integration":
        return UnknownIntegrationError(message)
    if resource == "connection":
        corrupt = problem.fields.get("corrupt_record") is True
        return (CorruptRecordError if corrupt else UnknownConnectionError)(message)
    return UsageError(problem.described)


def _reauthorization_required(problem: Problem) -> TokenlifeError:
    fields = problem.fields
    # The stored error (invalid_grant, ...) is the reason the in-process error gives; when
    # there is none (an expired token without a refresh token), the server's sentence.
    reason = _text(fields.get("reason")) or _text(fields.get("last_error")) or problem.message
    diagnosis = fields.get("diagnosis")
    fixes = tuple(d for d in diagnosis if isinstance(d, str)) if isinstance(diagnosis, list) else ()
    return ReauthorizationRequiredError(
        *problem.where(), reason or "unknown", diagnosis=fixes, message=problem.message or None
    )


def _no_refresh_token(problem: Problem) -> TokenlifeError:
    expires_at = problem.fields.get("expires_at")
    try:
        until = datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else None
    except ValueError:
        until = None
    reason = problem.message or "this connection has no refresh token to use"
    return NoRefreshTokenError(*problem.where(), reason, expires_at=until)


def _integration_unavailable(problem: Problem) -> TokenlifeError:
    wait = problem.retry_after
    if wait is None:
        wait = _retry_after(str(problem.fields.get("retry_after", "")), problem.now)
    if wait is None:
        wait = _DEFAULT_RETRY_SECONDS
    message = problem.message or problem.described
    error = IntegrationUnavailableError(
        problem.integration or "?", message, None, problem.now + wait, message=message
    )
    error.retry_after = wait
    return error


def _connection_busy(problem: Problem) -> TokenlifeError:
    wait = problem.retry_after
    return ConnectionBusyError(
        problem.message or problem.described,
        retry_after=_DEFAULT_RETRY_SECONDS if wait is None else wait,
    )


def _described(kind: type[TokenlifeError]) -> Callable[[Problem], TokenlifeError]:
    return lambda problem: kind(problem.described)


# Every code web/ answers with (grep `problem(`); a code this table doesn't know (a newer
# server) is read by its status.
_BY_CODE: dict[str, Callable[[Problem], TokenlifeError]] = {
    "bad_request": _described(UsageError),
    "too_large": _described(UsageError),
    "unauthorized": _described(UnauthorizedError),
    "forbidden": _described(ForbiddenError),
    "not_found": _not_found,
    "reauthorization_required": _reauthorization_required,
    "no_refresh_token": _no_refresh_token,
    "undecryptable": _described(DecryptionError),
    "internal_error": _described(TokenlifeError),
    "unavailable": _described(StorageUnavailableError),
    "integration_unavailable": _integration_unavailable,
    "provider_unavailable": _described(TransientError),
    "connection_busy": _connection_busy,
    "timeout": _described(TransientError),
}

_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def _by_status(problem: Problem) -> TokenlifeError:
    status = problem.status
    if status in _TRANSIENT_STATUSES:
        return TransientError(problem.described)
    # Every 404 of the API names its code: one without is a page of something else (a
    # base URL that is not tokenlife's), which no change of arguments fixes.
    if 400 <= status < 500 and status != 404:
        return UsageError(problem.described)
    return TokenlifeError(problem.described)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` in seconds, from 0 to MAX_RETRY_AFTER: delay-seconds or an HTTP date
    (RFC 9110 §10.2.3); None when absent or unreadable. The cap keeps a proxy's "1e9"
    from parking a retry loop for years."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # Imported here: the email package is a sixth of the client's import time, and
        # most answers give seconds.
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
