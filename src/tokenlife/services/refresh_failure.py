"""What a failed refresh writes: when to retry, the connection's failure fields, its
status (degraded once the access token has lapsed) and, once per failing stretch, the
alert (token_loss.py has the alert for new tokens that could not be saved)."""

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
    refresh_failing_alert_due,
    unknown_outcome_retry_within,
)
from tokenlife.core.secret_expiry import SECRET_EXPIRED_RETRY_SECONDS, names_expired_secret
from tokenlife.errors import TokenlifeError

_MAY_HAVE_ROTATED = (
    ". The outcome of a refresh is unknown (the request went out, no answer came): the "
    "provider may have rotated the refresh token; the next attempt re-sends the stored one"
)
# A prompt retry is for the first unknown outcomes of a stretch; a provider that keeps
# timing out gets the usual backoff (and the recovery of another connection pulls it in).
_PROMPT_RETRIES = 2
# A lapsed token's reasons that follow the latest refusal (other reasons are left alone).
_FAILING_REASONS = frozenset({"refresh_failing", "client_secret_expired", "provider_degraded"})


@dataclass(frozen=True, slots=True)
class FailurePlan:
    due: float
    fields: dict[str, str]
    alert: Event | None
    outcome_unknown: bool
    # Fields an earlier failure wrote that this one ends: a Retry-After of an earlier
    # answer holds no later retry back.
    cleared: tuple[str, ...] = ()


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
        provider_degraded: bool = False,
    ) -> FailurePlan:
        """`provider_degraded`: the failure is a probe of a host whose breaker is open; its
        alert.provider_degraded tells it, so no alert.refresh_failing of its own."""
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
        # An expired client secret is told once for the whole integration
        # (alert.client_secret_expired), not once per connection.
        secret_expired = names_expired_secret(error, getattr(exc, "description", None))
        if secret_expired:
            # Every retry would be refused the same way: wait long, and let no recovery of
            # another connection pull it in (retry_not_before, pull_forward.lua). One probe
            # per integration (beat, ClientSecretWatch.probe) finds the new secret; its
            # success brings the others in.
            due = now + SECRET_EXPIRED_RETRY_SECONDS
            if connection.expires_at is not None and now < connection.expires_at < due:
                # Once more when the access token lapses: that refusal writes the degraded
                # status and its reason (else it would read as refresh_overdue for hours).
                due = connection.expires_at
        expires_at = connection.expires_at
        lapsed = expires_at is not None and expires_at <= now
        fields = {
            "consecutive_failures": str(failures),
            "failing_since": repr(connection.failing_since or now),
            "failure_window_start": repr(window.started_at),
            "failure_window_count": str(window.count),
            "last_error": error,
            # Not updated_at: any later write (a rotation-conflict mark) would reset the
            # least wait of pull_forward.lua.
            "last_failed_at": repr(now),
        }
        earlier_unknown = connection.outcome_unknown_at is not None
        if unknown and not earlier_unknown:
            fields["outcome_unknown_at"] = repr(now)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            # The provider's word: no recovery elsewhere brings this retry before it.
            fields["retry_not_before"] = repr(now + retry_after)
            fields["retry_held_by"] = "retry_after"
        if secret_expired:
            # Held for the secret: a new secret ends it (services/secret_expiry.py), a
            # Retry-After is the provider's and no new secret ends that.
            fields["retry_not_before"] = repr(due)
            fields["retry_held_by"] = "client_secret"
        cleared = () if "retry_not_before" in fields else ("retry_not_before", "retry_held_by")
        reason = "client_secret_expired" if secret_expired else "refresh_failing"
        if provider_degraded and not secret_expired:
            reason = "provider_degraded"
        if lapsed and (
            connection.status is Status.ACTIVE
            or (
                connection.status is Status.DEGRADED
                and connection.status_reason in _FAILING_REASONS - {reason}
            )
        ):
            # No usable access token and no new one coming: not active, say why (the
            # secret, when the provider named it: re-authorizing would not help).
            fields["status"] = Status.DEGRADED.value
            fields["status_reason"] = reason
        alert = None
        due_alert = refresh_failing_alert_due(
            lapsed=lapsed, outcome_unknown=unknown, earlier_outcome_unknown=earlier_unknown,
            grace_seconds=grace,
        )  # fmt: skip
        folded = secret_expired or provider_degraded
        if due_alert and not connection.refresh_failing_alerted and not folded:
            rotated = unknown or earlier_unknown
            description = str(exc) + (_MAY_HAVE_ROTATED if rotated else "")
            fields["refresh_failing_alerted"] = "1"
            alert = new_event(
                events.REFRESH_FAILING, connection.integration, connection.connection_id, now,
                provider=connection.provider, error=error, error_description=description,
                failing_since=events.iso8601(connection.failing_since or now),
                failed_attempts=failures, access_token_expired_at=events.iso8601(expires_at),
                next_attempt_at=events.iso8601(due),
                refresh_token_may_have_rotated=rotated, refresh_token_may_be_lost=False,
                **reuse_grace(integration),
            )  # fmt: skip
        return FailurePlan(due, fields, alert, unknown, cleared)
