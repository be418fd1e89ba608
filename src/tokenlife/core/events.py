"""Event types and their payloads. Documented field by field in docs/events.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CONNECTION_AUTHORIZED = "connection.authorized"
REFRESH_TOKEN_MISSING = "alert.refresh_token_missing"
LIFETIME_UNKNOWN = "alert.lifetime_unknown"
EXCHANGE_FAILED = "exchange.failed"
EXCHANGE_FAILED_ALERT = "alert.exchange_failed"
TOKEN_REFRESHED = "token.refreshed"
CONNECTION_RECOVERED = "connection.recovered"
REAUTHORIZATION_REQUIRED = "alert.reauthorization_required"
REFRESH_FAILING = "alert.refresh_failing"
ACCESS_TOKEN_EXPIRING = "alert.access_token_expiring"
CONFIGURATION = "alert.configuration"
CONNECTION_DELETED = "connection.deleted"
INTEGRATION_AVAILABLE = "integration.available"
# Per integration, not per connection (connection_id is null): services/secret_expiry.py.
CLIENT_SECRET_EXPIRING = "alert.client_secret_expiring"
CLIENT_SECRET_EXPIRED = "alert.client_secret_expired"
CLIENT_SECRET_ACCEPTED = "client_secret.accepted"
# Per integration too, one for each integration on the provider host whose circuit breaker
# opened or closed (services/provider_health.py).
PROVIDER_DEGRADED = "alert.provider_degraded"
PROVIDER_RECOVERED = "provider.recovered"

REFRESH_TOKEN_MISSING_MESSAGE = (
    "Refresh token is not present and access token lifetime is too short."
)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]


def make_event(
    type_: str,
    *,
    event_id: str,
    now: float,
    integration: str,
    connection_id: str | None,
    **fields: Any,
) -> Event:
    data = {
        "event_id": event_id,
        "occurred_at": iso8601(now),
        "integration": integration,
        "connection_id": connection_id,
        **fields,
    }
    return Event(type=type_, data=data)


def iso8601(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def parse_iso8601(value: object) -> float | None:
    """The epoch seconds of an ISO 8601 time as iso8601 writes it (a time without an offset
    is taken as UTC); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
