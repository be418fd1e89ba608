"""A connection as stored: the hash fields, parsed; token values stay encrypted here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.core.events import iso8601
from tokenlife.core.policy import Status, Verdict, effective_status
from tokenlife.core.refresh_refusal import RefreshRefusal, refresh_refusal
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import CorruptRecordError

# Fields that describe the token set; a new token set replaces all of them.
TOKEN_FIELDS = (
    "access_token", "refresh_token", "token_type", "expires_at", "lifetime_seconds",
    "lifetime_source", "scopes_granted",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Connection:
    """What a stored connection says about itself; never the token values."""

    integration: str
    connection_id: str
    provider: str
    status: Status
    verdict: Verdict
    token_type: str
    expires_at: float | None
    lifetime_seconds: int | None
    lifetime_source: str | None
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...] | None
    has_refresh_token: bool
    created_at: float
    updated_at: float
    version: int
    next_refresh_at: float | None = None
    last_refreshed_at: float | None = None
    consecutive_failures: int = 0
    failing_since: float | None = None
    refresh_failing_alerted: bool = False
    failure_window_start: float | None = None
    failure_window_count: int = 0
    expiry_alerts_sent: tuple[float, ...] = ()
    last_error: str | None = None
    last_alert: Mapping[str, Any] | None = None
    # The account's OIDC `sub` when the provider said (an ID token); a reconnect that
    # brings another one is refused unless the integration allows an account change.
    subject: str | None = None
    # Why the status is what it is, when it isn't plain: "refresh_failing" (degraded: the
    # access token lapsed while refreshes fail), "client_secret_expired" (the same, the
    # provider refusing the expired client secret), "refresh_token_may_be_lost"; and, as read
    # (effective), "refresh_overdue" (lapsed with no refresh attempted).
    status_reason: str | None = None
    # When the latest transient failure was recorded (pull_forward.lua's least wait).
    last_failed_at: float | None = None
    # When a refresh of this failing stretch ended with its outcome unknown.
    outcome_unknown_at: float | None = None

    def effective(self, now: float) -> Connection:
        """The connection as readers should see it at `now` (core.policy.effective_status)."""
        status, reason = effective_status(
            self.status, self.status_reason, has_refresh_token=self.has_refresh_token,
            expires_at=self.expires_at, now=now,
        )  # fmt: skip
        if status is self.status and reason == self.status_reason:
            return self
        return replace(self, status=status, status_reason=reason)

    def refresh_refusal(self, now: float) -> RefreshRefusal | None:
        """Why a refresh asked for now can't succeed, or None (core.refresh_refusal)."""
        return refresh_refusal(
            status=self.status, last_error=self.last_error,
            has_refresh_token=self.has_refresh_token, expires_at=self.expires_at, now=now,
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "integration": self.integration,
            "connection_id": self.connection_id,
            "provider": self.provider,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "verdict": self.verdict.value,
            "token_type": self.token_type,
            "expires_at": iso8601(self.expires_at),
            "access_token_lifetime_seconds": self.lifetime_seconds,
            "lifetime_source": self.lifetime_source,
            "scopes_requested": list(self.scopes_requested),
            "scopes_granted": None if self.scopes_granted is None else list(self.scopes_granted),
            "has_refresh_token": self.has_refresh_token,
            "created_at": iso8601(self.created_at),
            "updated_at": iso8601(self.updated_at),
            "version": self.version,
            "next_refresh_at": iso8601(self.next_refresh_at),
            "last_refreshed_at": iso8601(self.last_refreshed_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": iso8601(self.failing_since),
            "last_error": self.last_error,
            "last_alert": None if self.last_alert is None else dict(self.last_alert),
            "subject": self.subject,
        }


def token_fields(tokens: TokenSet, cipher: Cipher) -> dict[str, str]:
    """The hash fields of a token set; values encrypted, absent parts left out."""
    fields = {
        "token_type": tokens.token_type,
        "access_token": cipher.encrypt(tokens.access_token),
    }
    if tokens.refresh_token is not None:
        fields["refresh_token"] = cipher.encrypt(tokens.refresh_token)
    if tokens.expires_at is not None:
        fields["expires_at"] = repr(tokens.expires_at)
    if tokens.lifetime_seconds is not None:
        fields["lifetime_seconds"] = str(tokens.lifetime_seconds)
    if tokens.lifetime_source is not None:
        fields["lifetime_source"] = tokens.lifetime_source
    if tokens.granted_scopes is not None:
        fields["scopes_granted"] = " ".join(tokens.granted_scopes)
    return fields


def connection_fields(
    integration: str,
    connection_id: str,
    provider: str,
    tokens: TokenSet,
    cipher: Cipher,
    *,
    verdict: Verdict,
    status: Status,
    scopes_requested: tuple[str, ...],
    next_check_at: float | None,
    now: float,
) -> dict[str, str]:
    """Every field of a newly authorized connection (save_connection.lua adds the rest)."""
    fields = {
        "integration": integration,
        "connection_id": connection_id,
        "provider": provider,
        "status": status.value,
        "verdict": verdict.value,
        "scopes_requested": " ".join(scopes_requested),
        "last_refreshed_at": repr(now),
        **token_fields(tokens, cipher),
    }
    if next_check_at is not None:
        fields["next_refresh_at"] = repr(next_check_at)
    return fields


def save_keys(
    keys: Keys, integration: str, connection_id: str, state: str | None, provider: str = ""
) -> list[str]:
    """KEYS of save_connection.lua; `state` names the exchange claim to mark, if any (drawn
    in the connection's shard, services/exchange.py); `provider`, the backoff set the
    connection leaves (a new authorization isn't failing)."""
    shard = keys.shard(integration, connection_id)
    return [
        keys.connection(integration, connection_id),
        keys.connections(integration, shard),
        keys.schedule(shard),
        keys.unused(shard) if state is None else keys.exchanging(state),
        keys.events(shard),
        keys.token_deadlines(shard),
        *keys.status_count_keys(shard),
        *([keys.backoff(provider, shard)] if provider else []),
    ]


def save_args(
    keys: Keys,
    integration: str,
    connection_id: str,
    now: float,
    next_check_at: float | None,
    fields: Mapping[str, str],
    subject: str | None,
) -> list[str]:
    """The first six ARGV of save_connection.lua: what every save passes."""
    return [
        connection_id,
        repr(now),
        keys.member(integration, connection_id),
        "" if next_check_at is None else repr(next_check_at),
        json.dumps(dict(fields)),
        subject or "",
    ]


def _float(raw: Mapping[str, str], name: str) -> float | None:
    return float(raw[name]) if name in raw else None


# Written by every save; a hash without one of them was cut short or re-created by a stray
# partial write, and is no connection.
REQUIRED_FIELDS = (
    "integration", "connection_id", "provider", "status", "verdict", "token_type",
    "access_token", "created_at", "updated_at", "version",
)  # fmt: skip


def parse_connection(raw: Mapping[str, str]) -> Connection:
    """The stored record, or CorruptRecordError naming what is wrong (never a value)."""
    missing = [name for name in REQUIRED_FIELDS if name not in raw]
    if missing:
        raise CorruptRecordError(
            f"the stored record of this connection is incomplete (no {', '.join(missing)}); "
            "delete it and connect again"
        )
    try:
        return _parse_fields(raw)
    except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise CorruptRecordError(
            f"the stored record of this connection has an unreadable field "
            f"({type(exc).__name__}); delete it and connect again"
        ) from None


def _parse_fields(raw: Mapping[str, str]) -> Connection:
    granted = raw.get("scopes_granted")
    sent = raw.get("expiry_alerts_sent", "")
    return Connection(
        integration=raw["integration"],
        connection_id=raw["connection_id"],
        provider=raw["provider"],
        status=Status(raw["status"]),
        verdict=Verdict(raw["verdict"]),
        token_type=raw["token_type"],
        expires_at=_float(raw, "expires_at"),
        lifetime_seconds=int(raw["lifetime_seconds"]) if "lifetime_seconds" in raw else None,
        lifetime_source=raw.get("lifetime_source"),
        scopes_requested=tuple(raw.get("scopes_requested", "").split()),
        scopes_granted=None if granted is None else tuple(granted.split()),
        has_refresh_token="refresh_token" in raw,
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        version=int(raw["version"]),
        next_refresh_at=_float(raw, "next_refresh_at"),
        last_refreshed_at=_float(raw, "last_refreshed_at"),
        consecutive_failures=int(raw.get("consecutive_failures", "0")),
        failing_since=_float(raw, "failing_since"),
        refresh_failing_alerted=raw.get("refresh_failing_alerted") == "1",
        failure_window_start=_float(raw, "failure_window_start"),
        failure_window_count=int(raw.get("failure_window_count", "0")),
        expiry_alerts_sent=tuple(float(x) for x in sent.split(",") if x),
        last_error=raw.get("last_error"),
        last_alert=json.loads(raw["last_alert"]) if "last_alert" in raw else None,
        subject=raw.get("subject"),
        status_reason=raw.get("status_reason"),
        last_failed_at=_float(raw, "last_failed_at"),
        outcome_unknown_at=_float(raw, "outcome_unknown_at"),
    )
