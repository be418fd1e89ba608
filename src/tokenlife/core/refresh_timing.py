"""When to refresh: ahead of expiry, to keep idle refresh tokens alive, after failures.

All pure: `now` and random jitter come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenlife.core.backoff import compute_backoff

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class RefreshTiming:
    """How far ahead of expiry to refresh; presets and integrations may override."""

    min_margin_seconds: float = 300.0
    margin_fraction: float = 0.2
    # The margin grows by up to this fraction at random, so tokens issued together
    # don't all come due in the same second.
    jitter_fraction: float = 0.1
    # A refresh token that dies after this long unused gets a keep-alive refresh.
    refresh_token_idle_seconds: float | None = None
    # An access token of unknown lifetime (no expires_in, no JWT exp; Salesforce) is
    # refreshed this often, so a stored token is never older than this.
    unknown_lifetime_refresh_seconds: float | None = 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 5.0
    max_seconds: float = 900.0
    max_attempts_per_hour: int = 10


def next_refresh_at(
    *,
    expires_at: float | None,
    lifetime_seconds: int | None,
    last_refreshed_at: float,
    timing: RefreshTiming,
    jitter: float,
    now: float,
) -> float | None:
    """The due time of the next refresh of a token set that has a refresh token.

    The margin is the larger of the minimum and the fraction of the lifetime, but never
    more than half the lifetime: a 5-minute token refreshed 5 minutes early would be due
    the moment it arrives, forever.
    """
    candidates: list[float] = []
    if expires_at is not None:
        lifetime = float(lifetime_seconds) if lifetime_seconds else max(0.0, expires_at - now)
        margin = min(max(timing.min_margin_seconds, timing.margin_fraction * lifetime),
                     lifetime / 2)  # fmt: skip
        spread = timing.jitter_fraction * jitter
        # Widen the margin with the jitter; where that would pass half the lifetime,
        # narrow it instead, so short tokens issued together still spread out.
        margin = (
            margin * (1 + spread)
            if margin * (1 + spread) <= lifetime / 2
            else margin * (1 - spread)
        )
        candidates.append(expires_at - margin)
    if timing.refresh_token_idle_seconds:
        # Half the idle limit: a keep-alive that fails still has the other half to succeed.
        candidates.append(last_refreshed_at + timing.refresh_token_idle_seconds / 2)
    if expires_at is None and timing.unknown_lifetime_refresh_seconds:
        candidates.append(last_refreshed_at + timing.unknown_lifetime_refresh_seconds)
    if not candidates:
        return None
    return max(now, min(candidates))


def needs_refresh(
    *, expires_at: float | None, lifetime_seconds: int | None, leeway: float, now: float
) -> bool:
    """On demand: refresh when the token expires within the leeway (at most half its life)."""
    if expires_at is None:
        return False
    if lifetime_seconds:
        leeway = min(leeway, lifetime_seconds / 2)
    return expires_at - now <= leeway


@dataclass(frozen=True, slots=True)
class FailureWindow:
    """Transient failures of one connection in the current hour-long window."""

    started_at: float
    count: int


def after_transient_failure(
    *,
    consecutive_failures: int,
    window: FailureWindow | None,
    policy: RetryPolicy,
    retry_after: float | None,
    jitter: float,
    now: float,
    within: float | None = None,
    expires_at: float | None = None,
) -> tuple[float, FailureWindow]:
    """When to try again after the `consecutive_failures`-th failure in a row (1-based).

    Exponential backoff with jitter, at least the server's Retry-After, and never more
    than `max_attempts_per_hour` attempts in one window: the rest wait for the next.
    `within` caps the wait (a refresh whose outcome is unknown is retried promptly).
    A wait that would pass the access token's expiry (`expires_at`) ends then instead,
    unless Retry-After says otherwise: a retry comes the moment the token lapses, and
    if it fails the connection is marked degraded then, not minutes later.
    """
    if window is None or now - window.started_at >= HOUR:
        window = FailureWindow(started_at=now, count=0)
    window = FailureWindow(started_at=window.started_at, count=window.count + 1)
    delay = compute_backoff(
        max(0, consecutive_failures - 1),
        base=policy.base_seconds,
        cap=policy.max_seconds,
        jitter=jitter,
        retry_after=retry_after,
    )
    due = now + delay if within is None else now + min(delay, within)
    if expires_at is not None and now < expires_at < due:
        due = max(expires_at, now + (retry_after or 0.0))
    if window.count >= policy.max_attempts_per_hour:
        due = max(due, window.started_at + HOUR)
    return due, window


# An unknown outcome is retried within this long, or within half the provider's reuse
# grace when that is shorter: the stored (old) refresh token still works inside it.
PROMPT_RETRY_SECONDS = 5.0


def may_have_rotated(*, rotates_refresh_tokens: str, request_sent: bool) -> bool:
    """A refresh that timed out, or broke after the request went out, may have been
    processed by the provider: at a provider that may rotate, the refresh token we hold
    may be dead already. The outcome is unknown; only a prompt retry can tell."""
    return request_sent and rotates_refresh_tokens != "no"


def unknown_outcome_retry_within(grace_seconds: int | None) -> float:
    """How soon to retry a refresh whose outcome is unknown: inside the reuse grace
    window where there is one (half of it, for a retry that fails too); without one, at
    once anyway, because a retry is the only way to learn whether the old token lives."""
    if grace_seconds is None or grace_seconds <= 0:
        return PROMPT_RETRY_SECONDS
    return min(grace_seconds / 2, PROMPT_RETRY_SECONDS)


def refresh_failing_alert_due(
    *,
    lapsed: bool,
    outcome_unknown: bool,
    earlier_outcome_unknown: bool,
    grace_seconds: int | None,
) -> bool:
    """Whether a transient failure calls for `alert.refresh_failing` (sent once a stretch).

    Always once the access token has lapsed. A refresh whose outcome is unknown alerts at
    once where the provider documents no reuse grace (Auth0 without an overlap period:
    reuse detection revokes the family, so the prompt retry itself may end the grant);
    elsewhere the prompt retry with the stored token usually settles it silently, so only
    a failure after an unknown outcome of the same stretch (the retry failed too) alerts.
    """
    if lapsed or earlier_outcome_unknown:
        return True
    return outcome_unknown and grace_seconds == 0
