"""What a failed refresh writes: when to retry, the connection's failure fields, its
status (degraded once the access token has lapsed) and, once per failing stretch, the
alert; and the alert for new tokens that could not be saved."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import new_event
from tokenlife.core import events
from tokenlife.core.events import Event
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status
from tokenlife.core.refresh_timing import (
    FailureWindow,
    RetryPolicy,
    after_transient_failure,
    may_have_rotated,
    unknown_outcome_retry_within,
)
from tokenlife.errors import TokenlifeError

# A prompt retry is for the first unknown outcomes of a stretch; a provider that keeps
# timing out gets the usual backoff (and the recovery of another connection pulls it in).
_PROMPT_RETRIES = 2


@dataclass(frozen=True, slots=True)
class FailurePlan:
    due: float
    fields: dict[str, str]
    alert: Event | None
    outcome_unknown: bool


def reuse_grace(integration: Integration) -> dict[str, Any]:
    """The catalogue's facts about reusing a rotated-out refresh token, for alerts."""
    facts = integration.preset.facts
    return {
        "rotates_refresh_tokens": facts.get("rotates_refresh_tokens"),
        "reuse_grace_seconds": facts.refresh_token_reuse_grace_seconds,
        "reuse_grace_source": facts.sources.get("refresh_token_reuse_grace_seconds"),
    }


class FailureBookkeeping:
    def __init__(self, retry: RetryPolicy, rng: random.Random) -> None:
        self._retry = retry
        self._rng = rng

    def plan(
        self,
        integration: Integration,
        connection: Connection,
        exc: TokenlifeError,
        now: float,
        *,
        request_sent: bool,
    ) -> FailurePlan:
        failures = connection.consecutive_failures + 1
        unknown = may_have_rotated(
            rotates_refresh_tokens=integration.preset.facts.get("rotates_refresh_tokens"),
            request_sent=request_sent,
        )
        window = None
        if connection.failure_window_start is not None:
            window = FailureWindow(connection.failure_window_start, connection.failure_window_count)
        grace = integration.preset.facts.refresh_token_reuse_grace_seconds
        due, window = after_transient_failure(
            consecutive_failures=failures,
            window=window,
            policy=self._retry,
            retry_after=getattr(exc, "retry_after", None),
            jitter=self._rng.random(),
            now=now,
            # The provider may have rotated the token without our hearing: the stored one
            # still works inside its reuse grace, so try again inside it.
            within=unknown_outcome_retry_within(grace)
            if unknown and failures <= _PROMPT_RETRIES
            else None,
            # A retry when the token lapses: its failure marks the connection degraded.
            expires_at=connection.expires_at,
        )
        error = str(getattr(exc, "error", "error"))
        expires_at = connection.expires_at
        lapsed = expires_at is not None and expires_at <= now
        fields = {
            "consecutive_failures": str(failures),
            "failing_since": repr(connection.failing_since or now),
            "failure_window_start": repr(window.started_at),
            "failure_window_count": str(window.count),
            "last_error": error,
        }
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            # The provider's word: no recovery elsewhere brings this retry before it.
            fields["retry_not_before"] = repr(now + retry_after)
        if lapsed and connection.status is Status.ACTIVE:
            # No usable access token and no new one coming: not active, say why.
            fields["status"] = Status.DEGRADED.value
            fields["status_reason"] = "refresh_failing"
        alert = None
        if lapsed and not connection.refresh_failing_alerted:
            fields["refresh_failing_alerted"] = "1"
            alert = new_event(
                events.REFRESH_FAILING, connection.integration, connection.connection_id, now,
                provider=connection.provider, error=error, error_description=str(exc),
                failing_since=events.iso8601(connection.failing_since or now),
                failed_attempts=failures, access_token_expired_at=events.iso8601(expires_at),
                next_attempt_at=events.iso8601(due),
                refresh_token_may_have_rotated=unknown, refresh_token_may_be_lost=False,
                **reuse_grace(integration),
            )  # fmt: skip
        return FailurePlan(due, fields, alert, unknown)


# Why a rotated refresh token may be lost: the save gave up, or found a newer version.
SAVE_FAILED = "save_failed"
ROTATION_CONFLICT = "rotation_conflict"


def lost_token_alert(
    integration: Integration,
    connection: Connection,
    now: float,
    rotated: bool,
    error: str = SAVE_FAILED,
) -> Event:
    """The provider answered a refresh, but Redis stayed away until the retries ran out
    (SAVE_FAILED); or the save found that another worker had written meanwhile, having
    re-sent the refresh token this one rotated (ROTATION_CONFLICT: a claim after a Redis
    outage longer than the lock)."""
    grace = reuse_grace(integration)
    seconds = grace["reuse_grace_seconds"]
    window = (
        f"the provider documents a reuse grace of {seconds} s for the old one"
        if seconds
        else "no reuse grace is documented for this provider"
    )
    return new_event(
        events.REFRESH_FAILING, connection.integration, connection.connection_id, now,
        provider=connection.provider, error=error,
        error_description=(
            ("The provider answered a refresh but the new tokens could not be saved: "
             if error == SAVE_FAILED else
             "The provider answered a refresh, but another worker re-sent the old refresh "
             "token before the new one could be saved (Redis was away longer than the "
             "lock): ")
            + ("a rotated refresh token may be lost; " if rotated else "")
            + window + ". The next attempt uses the stored refresh token; if it fails with "
            "invalid_grant, the user has to connect again."
        ),
        failing_since=events.iso8601(connection.failing_since or now),
        failed_attempts=connection.consecutive_failures + 1,
        access_token_expired_at=events.iso8601(connection.expires_at or now),
        next_attempt_at=events.iso8601(now),
        refresh_token_may_have_rotated=False, refresh_token_may_be_lost=rotated, **grace,
    )  # fmt: skip
