"""What an exchange publishes: the events of a stored connection, and the summaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenlife.adapters.event_stream import new_event
from tokenlife.core import events
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.authorization_errors import Diagnosis, Refusal
from tokenlife.core.diagnosis import detect_vendor, diagnose_missing_refresh_token
from tokenlife.core.events import Event
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.presets import Preset
from tokenlife.core.tokens import TokenSet
from tokenlife.services.callback import described_params, summary

STORAGE_LOST = (
    "The code was sent to the provider (or was about to be), but no answer was stored: "
    "Redis was unavailable, or the worker stopped before saving. A code works only once: "
    "connect the account again."
)
OUTCOME_UNKNOWN = (
    "The code was sent to the provider, but its answer never arrived (the request timed "
    "out or the connection broke after it was sent): the provider may have redeemed it. A "
    "code works only once (RFC 6749 §4.1.2), so it is not sent again: connect the account "
    "again."
)
SUBJECT_UNKNOWN = (
    "This connection is bound to an account, and the provider's answer doesn't say which "
    "account the new tokens are for (no ID token), so they can't be checked; the stored "
    "connection was left unchanged. Keep the openid scope when connecting, or set "
    "allow_account_change for the integration if replacing the account is intended."
)
SUBJECT_MISMATCH = (
    "The provider returned tokens for a different account than the one this connection "
    "is bound to; the stored connection was left unchanged. Connect with the same account, "
    "or set allow_account_change for the integration if replacing the account is intended."
)


def authorized_events(
    integration: Integration,
    presets: Mapping[str, Preset],
    pending: PendingAuthorization,
    tokens: TokenSet,
    verdict: Verdict,
    status: Status,
    now: float,
) -> tuple[list[Event], list[str]]:
    """`connection.authorized` and the alert the verdict calls for; and the fix steps the
    connect page shows for a missing refresh token."""
    cid = pending.connection_id
    common = {
        "provider": integration.provider,
        "status": status.value,
        "expires_at": events.iso8601(tokens.expires_at),
        "access_token_lifetime_seconds": tokens.lifetime_seconds,
        "refresh_token_received": tokens.refresh_token is not None,
    }
    published = [
        new_event(
            events.CONNECTION_AUTHORIZED, integration.name, cid, now,
            verdict=verdict.value, **common,
        )
    ]  # fmt: skip
    fixes: list[str] = []
    minimum_days = integration.minimum_access_token_only_lifetime_days
    if verdict is Verdict.REFRESH_TOKEN_MISSING:
        diagnosis = diagnose_missing_refresh_token(
            integration, presets, pending.params, tokens.granted_scopes, tokens.lifetime_seconds
        )
        fixes = [cause.fix for cause in diagnosis]
        published.append(
            new_event(
                events.REFRESH_TOKEN_MISSING, integration.name, cid, now,
                message=events.REFRESH_TOKEN_MISSING_MESSAGE,
                minimum_lifetime_days=minimum_days,
                requested={"scopes": list(pending.scopes), "params": described_params(pending)},
                granted_scopes=None if tokens.granted_scopes is None
                else list(tokens.granted_scopes),
                diagnosis=[cause.as_dict() for cause in diagnosis],
                **common,
            )
        )  # fmt: skip
    elif verdict is Verdict.LIFETIME_UNKNOWN:
        published.append(
            new_event(
                events.LIFETIME_UNKNOWN, integration.name, cid, now,
                message="The access token came without a refresh token, expires_in or a JWT "
                "exp claim, so its lifetime can't be checked.",
                minimum_lifetime_days=minimum_days,
                **common,
            )
        )  # fmt: skip
    return published, fixes


def stored_summary(
    integration: Integration,
    pending: PendingAuthorization,
    tokens: TokenSet,
    verdict: Verdict,
    status: Status,
    fixes: list[str],
) -> dict[str, Any]:
    return summary(
        integration.name,
        pending.connection_id,
        outcome=verdict.value,
        status=status.value,
        expires_at=events.iso8601(tokens.expires_at),
        refresh_token_received=tokens.refresh_token is not None,
        return_to=pending.return_to,
        fixes=fixes,
    )


def refusal_for(
    pending: PendingAuthorization,
    integration: Integration | None,
    presets: Mapping[str, Preset],
    error: str,
    description: str | None,
) -> Refusal:
    """What the diagnosis of a failed exchange may know: what was sent and the catalogue's
    facts (for a `custom` integration in front of a catalogued vendor, that vendor's)."""
    preset = integration.preset if integration is not None else None
    vendor = detect_vendor(integration, presets) if integration is not None else None
    if vendor is not None:
        preset = vendor[0]
    return Refusal(
        error=error,
        description=description,
        provider=preset.name if preset is not None else "custom",
        scope=pending.params.get("scope", ""),
        prompt=pending.params.get("prompt"),
        redirect_uri=pending.redirect_uri,
        offline_scopes=preset.offline_scopes if preset is not None else (),
        prompt_values_supported=None
        if integration is None
        else integration.prompt_values_supported,
    )


def failure(
    pending: PendingAuthorization,
    now: float,
    *,
    error: str,
    description: str | None,
    attempts: int,
    diagnosis: Diagnosis,
    provider: str | None = None,
) -> tuple[Event, dict[str, Any], Event]:
    """The `exchange.failed` event, the task's summary for the same failure, and the
    `alert.exchange_failed` that tells on-call (deduplicated per integration and cause)."""
    causes = diagnosis.as_list()
    event = new_event(
        events.EXCHANGE_FAILED, pending.integration, pending.connection_id, now,
        error=error, error_description=description, attempts=attempts, diagnosis=causes,
    )  # fmt: skip
    alert = new_event(
        events.EXCHANGE_FAILED_ALERT, pending.integration, pending.connection_id, now,
        provider=provider or "unknown",
        message=f"Connecting an account failed: {diagnosis.causes[0].cause}",
        cause=diagnosis.key, severity=diagnosis.severity,
        error=error, error_description=description, attempts=attempts,
        requested={"scopes": list(pending.scopes), "params": described_params(pending)},
        diagnosis=causes,
    )  # fmt: skip
    return (
        event,
        summary(
            pending.integration,
            pending.connection_id,
            outcome="failed",
            error=error,
            error_description=description,
            return_to=pending.return_to,
            fixes=[c.fix for c in diagnosis.causes],
            diagnosis=causes,
        ),
        alert,
    )
