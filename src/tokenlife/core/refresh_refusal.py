"""May a connection be refreshed now? The one answer that POST /api/connections/.../refresh,
the dashboard's "Refresh now" and `tokenlife connections refresh` all give: a refresh that
can't succeed is refused, with why and what fixes it, before the provider is asked (and
before anything is queued, which would hide that the user must connect again)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tokenlife.core.alert_details import moment
from tokenlife.core.events import iso8601
from tokenlife.core.policy import Status

RECONNECT = (
    "Send the user a reconnect link (POST /api/connect-sessions, or the dashboard's "
    "reconnect button): only connecting again stores new tokens."
)


class RefusalKind(StrEnum):
    REAUTHORIZATION_REQUIRED = "reauthorization_required"  # what /token answers too
    NO_REFRESH_TOKEN = "no_refresh_token"  # the access token still works, for a while


@dataclass(frozen=True, slots=True)
class RefreshRefusal:
    kind: RefusalKind
    reason: str  # a sentence; a stored error code at most, never a token
    fix: str


def refresh_refusal(
    *,
    status: Status,
    last_error: str | None,
    has_refresh_token: bool,
    expires_at: float | None,
    now: float,
) -> RefreshRefusal | None:
    """None when a refresh may be tried now. A degraded connection with a refresh token
    may: a refresh may bring it back."""
    if status is Status.REAUTHORIZATION_REQUIRED:
        return RefreshRefusal(RefusalKind.REAUTHORIZATION_REQUIRED, last_error or "status",
                              RECONNECT)  # fmt: skip
    if has_refresh_token:
        return None
    if expires_at is not None and expires_at <= now:
        # What /token says of the same connection (services/access.py).
        return RefreshRefusal(RefusalKind.REAUTHORIZATION_REQUIRED,
                              "access token expired, no refresh token", RECONNECT)  # fmt: skip
    # For a person: "2026-12-01 14:05 UTC, in 20 h", not an ISO stamp with microseconds.
    until = moment(iso8601(expires_at), now)
    return RefreshRefusal(
        RefusalKind.NO_REFRESH_TOKEN,
        "this connection has no refresh token to use; its access token stays valid "
        + (f"until {until}" if until else "for as long as the provider allows")
        + ", then the user has to connect again",
        "Before then, send the user a reconnect link; if the provider should have issued "
        "a refresh token, fix the integration first (`tokenlife integrations check`).",
    )  # fmt: skip


def requested_due(next_refresh_at: float | None, now: float) -> float:
    """The due time a refresh asked for now is queued with: the stored one, so the worker's
    once-per-due-time check (services/engine.py) lets it through."""
    return next_refresh_at if next_refresh_at is not None else now
