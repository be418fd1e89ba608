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
