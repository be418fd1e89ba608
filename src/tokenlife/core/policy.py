"""The refresh-token/lifetime rule: will this token set keep the integration authorized?"""

from __future__ import annotations

from enum import StrEnum

from tokenlife.core.tokens import TokenSet

SECONDS_PER_DAY = 86400


class Verdict(StrEnum):
    REFRESHABLE = "refreshable"  # a refresh token came
    LONG_LIVED = "long_lived"  # no refresh token, but the access token lasts long enough
    REFRESH_TOKEN_MISSING = "refresh_token_missing"  # neither: it will lapse
    LIFETIME_UNKNOWN = "lifetime_unknown"  # no refresh token and no way to know the lifetime


class Status(StrEnum):
    ACTIVE = "active"
    DEGRADED = "degraded"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"


def classify(tokens: TokenSet, minimum_days: float) -> Verdict:
    """A refresh token wins; otherwise the lifetime must reach `minimum_days`."""
    if tokens.refresh_token is not None:
        return Verdict.REFRESHABLE
    if tokens.lifetime_seconds is None:
        return Verdict.LIFETIME_UNKNOWN
    if tokens.lifetime_seconds >= minimum_days * SECONDS_PER_DAY:
        return Verdict.LONG_LIVED
    return Verdict.REFRESH_TOKEN_MISSING


def status_for(verdict: Verdict) -> Status:
    # A token of unknown lifetime may well never expire (GitHub OAuth apps); keep it
    # usable and warn instead of degrading a connection that may be fine.
    if verdict is Verdict.REFRESH_TOKEN_MISSING:
        return Status.DEGRADED
    return Status.ACTIVE


# Why a stored `active` connection reads as degraded: its access token has lapsed and no
# refresh has replaced it (none attempted yet: its integration unavailable, no worker, every
# claim throttled). A failed attempt writes "refresh_failing" instead.
REFRESH_OVERDUE = "refresh_overdue"


def effective_status(
    status: Status,
    status_reason: str | None,
    *,
    has_refresh_token: bool,
    expires_at: float | None,
    now: float,
) -> tuple[Status, str | None]:
    """The status a reader sees: the stored one, except that an `active` connection whose
    access token has lapsed although it has a refresh token is degraded. Refreshes are due
    well before expiry (refresh_timing.next_refresh_at), so a lapsed token means they are
    overdue; only a failed attempt writes the status, and none may have run."""
    if (
        status is Status.ACTIVE
        and has_refresh_token
        and expires_at is not None
        and expires_at <= now
    ):
        return Status.DEGRADED, REFRESH_OVERDUE
    return status, status_reason
