"""Alerts for people: which events are alerts, how severe, who gets them, what clears
them, how a storm becomes one message, and how a message reads. All pure."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlife.core import events
from tokenlife.core.alert_details import detail_lines, fix_steps

Severity = Literal["critical", "warning", "info"]
SEVERITY: dict[str, Severity] = {
    events.REAUTHORIZATION_REQUIRED: "critical",
    events.REFRESH_FAILING: "critical",
    events.REFRESH_TOKEN_MISSING: "warning",
    events.ACCESS_TOKEN_EXPIRING: "warning",
    events.LIFETIME_UNKNOWN: "info",
    events.CONFIGURATION: "warning",  # "critical" for findings of severity error
    events.EXCHANGE_FAILED_ALERT: "warning",  # the diagnosis's own severity, in the event
    events.CLIENT_SECRET_EXPIRING: "warning",
    # Every refresh of the integration fails until someone replaces the secret.
    events.CLIENT_SECRET_EXPIRED: "critical",
    # A provider host's breaker opened: its scheduled refreshes are held, and every lapsed
    # access token of its connections stays lapsed until the provider answers again.
    events.PROVIDER_DEGRADED: "critical",
}
# An event of the key type clears these alerts of the same connection.
CLEARS: dict[str, tuple[str, ...]] = {
    events.CONNECTION_RECOVERED: (events.REFRESH_FAILING,),
    events.CONNECTION_AUTHORIZED: (
        events.REAUTHORIZATION_REQUIRED, events.REFRESH_FAILING, events.ACCESS_TOKEN_EXPIRING,
        events.REFRESH_TOKEN_MISSING,
    ),
    # Integration-wide (connection_id null on both sides): the provider took the secret again.
    events.CLIENT_SECRET_ACCEPTED: (events.CLIENT_SECRET_EXPIRED, events.CLIENT_SECRET_EXPIRING),
    # Integration-wide too: a probe got an answer and the host's breaker closed.
    events.PROVIDER_RECOVERED: (events.PROVIDER_DEGRADED,),
}  # fmt: skip
# An alert of the key type raised this soon after one of these for the same connection is
# the same incident told twice (the expiry check runs right after a connect that came back
# without a refresh token): the first message already says when the token expires, so the
# targets it reached get no second one.
FOLDS_INTO: dict[str, tuple[str, ...]] = {
    events.ACCESS_TOKEN_EXPIRING: (events.REFRESH_TOKEN_MISSING,),
}
FOLD_SECONDS = 600.0
TITLES = {
    events.REAUTHORIZATION_REQUIRED: "re-authorization required",
    events.REFRESH_FAILING: "refresh failing",
    events.REFRESH_TOKEN_MISSING: "refresh token missing",
    events.ACCESS_TOKEN_EXPIRING: "access token expiring",
    events.LIFETIME_UNKNOWN: "access token lifetime unknown",
    events.CONFIGURATION: "configuration problem",
    events.EXCHANGE_FAILED_ALERT: "connecting an account failed",
    events.CLIENT_SECRET_EXPIRING: "client secret expiring",
    events.CLIENT_SECRET_EXPIRED: "client secret expired",
    events.PROVIDER_DEGRADED: "provider degraded",
}
SECTIONS = {
    events.REAUTHORIZATION_REQUIRED: "re-authorization-required",
    events.REFRESH_FAILING: "refreshes-keep-failing",
    events.ACCESS_TOKEN_EXPIRING: "access-token-expiring",
    events.CONFIGURATION: "configuration-findings",
    events.EXCHANGE_FAILED_ALERT: "a-connect-that-ended-in-exchangefailed",
    events.CLIENT_SECRET_EXPIRING: "client-secret-expiring",
    events.CLIENT_SECRET_EXPIRED: "client-secret-expired",
    events.PROVIDER_DEGRADED: "provider-degraded",
    events.LIFETIME_UNKNOWN: "refresh-token-is-not-present-and-access-token-lifetime-is-too-short",
}
# Alert types whose notifications are never grouped across their dedup keys.
APART = (events.CONFIGURATION, events.EXCHANGE_FAILED_ALERT)
# Alerts about an integration as a whole: the title names that instead of a connection.
_WHOLE = {
    events.CLIENT_SECRET_EXPIRING: "all connections",
    events.CLIENT_SECRET_EXPIRED: "all connections",
    events.PROVIDER_DEGRADED: "all connections",
}
PROVIDER_SECTIONS = {
    "google": "google",
    "microsoft": "microsoft",
    "custom": "custom-providers",
}


@dataclass(frozen=True, slots=True)
class Alert:
    entry_id: str
    type: str
    data: Mapping[str, Any]

    @property
    def severity(self) -> Severity:
        if self.type == events.CONFIGURATION and self.data.get("severity") == "error":
            return "critical"
        if self.type == events.EXCHANGE_FAILED_ALERT and self.data.get("severity") in (
            "critical", "warning", "info",
        ):  # fmt: skip
            return self.data["severity"]  # type: ignore[no-any-return]
        return SEVERITY.get(self.type, "info")

    @property
    def integration(self) -> str:
        return str(self.data.get("integration") or "-")

    @property
    def connection_id(self) -> str | None:
        value = self.data.get("connection_id")
        return None if value is None else str(value)

    @property
    def event_id(self) -> str:
        return str(self.data.get("event_id", self.entry_id))

    @property
    def occurred_at(self) -> float | None:
        return events.parse_iso8601(self.data.get("occurred_at"))

    def dedup_key(self, alert_type: str | None = None) -> str:
        """One notification per (connection, alert type) within the window; configuration
        findings per code *and* fix, since one code can name several problems (one per
        missing scope or parameter) that each need their change. Not the message: a finding
        whose wording carries a varying error (a discovery timeout, then a refusal) is the
        same problem. A failed exchange: one per (integration, cause), however many users
        hit it."""
        if self.type == events.EXCHANGE_FAILED_ALERT:
            return f"{self.integration}:-:{self.type}:{self.data.get('cause', '')}"
        key = f"{self.integration}:{self.connection_id or '-'}:{alert_type or self.type}"
        if self.type == events.CONFIGURATION and alert_type is None:
            fix = hashlib.sha256(str(self.data.get("fix", "")).encode()).hexdigest()[:12]
            key += f":{self.data.get('code', '')}:{fix}"
        return key


@dataclass(frozen=True, slots=True)
class Route:
    targets: tuple[str, ...]
    types: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    integrations: frozenset[str] | None = None

    def matches(self, alert: Alert) -> bool:
        return (
            (self.types is None or alert.type in self.types)
            and (self.severities is None or alert.severity in self.severities)
            and (self.integrations is None or alert.integration in self.integrations)
        )


def targets_for(alert: Alert, routes: Sequence[Route], default: Sequence[str]) -> list[str]:
    """Every matching route's targets; the default route when none matches."""
    chosen: list[str] = []
    for route in routes:
        if route.matches(alert):
            chosen += [t for t in route.targets if t not in chosen]
    return chosen or list(default)


@dataclass(frozen=True, slots=True)
class Notification:
    target: str
    kind: Literal["alert", "resolved"]
    type: str
    integration: str
    alerts: tuple[Alert, ...] = field(default=())
    # A resolution's: the key of the incident its alert opened (services/incidents.py).
    incident: str = ""


def group(items: Iterable[tuple[str, str, Alert]]) -> list[Notification]:
    """(target, kind, alert) -> one notification per target, kind, alert type and
    integration: a storm of a thousand connections failing together is one message. Each
    configuration finding stays a message of its own: findings share no connection list,
    and each has its own fix and severity; failed exchanges, one message per cause."""
    buckets: dict[tuple[str, str, str, str, str], list[Alert]] = {}
    for target, kind, alert in items:
        apart = alert.dedup_key() if alert.type in APART else ""
        key = (target, kind, alert.type, alert.integration, apart)
        buckets.setdefault(key, []).append(alert)
    return [
        Notification(target, kind, type_, integration, tuple(alerts))  # type: ignore[arg-type]
        for (target, kind, type_, integration, _), alerts in buckets.items()
    ]


def folds(alert: Alert, earlier_occurred_at: float | None) -> bool:
    """Whether `alert` is told already by an alert of a FOLDS_INTO type of its connection
    that occurred at `earlier_occurred_at`."""
    at = alert.occurred_at
    if earlier_occurred_at is None or at is None:
        return False
    return 0 <= at - earlier_occurred_at <= FOLD_SECONDS


def render(notification: Notification, docs_url: str, now: float) -> tuple[str, str]:
    """(title, body) for a person: the problem, what was asked and what came back, when the
    token expires, since when it fails and how, the fixes as numbered steps, and where to
    read more (`docs_url` is absolute, or empty: then the section is named, not linked)."""
    first = notification.alerts[0]
    what = TITLES.get(notification.type, notification.type)
    count = len(notification.alerts)
    whole = _WHOLE.get(first.type, "configuration")
    who = first.connection_id or str(first.data.get("code") or whole)
    subject = f"{count} connections" if count > 1 else who
    if notification.kind == "resolved":
        return (f"[tokenlife] RESOLVED {notification.integration}: {what} ({subject})",
                f"The condition cleared for {subject} of {notification.integration}.")  # fmt: skip
    title = f"[tokenlife] {notification.integration}: {what} ({subject})"
    lines = [str(first.data.get("message", what[:1].upper() + what[1:] + "."))]
    lines += ["", f"Integration: {notification.integration} "
                  f"(provider {first.data.get('provider', '-')})"]  # fmt: skip
    if count > 1:
        shown = ", ".join(a.connection_id or "-" for a in notification.alerts[:10])
        more = f" and {count - 10} more" if count > 10 else ""
        lines.append(f"Connections ({count}): {shown}{more}")
    elif first.connection_id:
        lines.append(f"Connection: {first.connection_id}")
    lines += _requested_and_returned(first.data)
    details = detail_lines(first.data, now)
    if details and count > 1:
        details.insert(0, f"First connection ({first.connection_id or '-'}):")
    lines += details
    fixes = fix_steps(notification.type, first.data)
    if fixes:
        lines += ["", "How to fix:"] + [f"{n}. {fix}" for n, fix in enumerate(fixes, 1)]
    if docs_url:
        lines += ["", f"More: {docs_url}#{section(first)}"]
    else:
        lines += ["", f"More: section #{section(first)} of docs/troubleshooting.md "
                      "(set TOKENLIFE_DOCS_URL to link it)"]  # fmt: skip
    return title, "\n".join(lines)


def section(alert: Alert) -> str:
    if alert.type == events.REFRESH_TOKEN_MISSING:
        provider = str(alert.data.get("provider", ""))
        return PROVIDER_SECTIONS.get(provider, "other-openid-connect-providers")
    return SECTIONS.get(
        alert.type, "refresh-token-is-not-present-and-access-token-lifetime-is-too-short"
    )


def _requested_and_returned(data: Mapping[str, Any]) -> list[str]:
    lines = []
    requested = data.get("requested")
    if isinstance(requested, Mapping):
        params = requested.get("params") or {}
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if k in ("prompt", "access_type"))
        lines.append(f"Requested: scopes {' '.join(requested.get('scopes') or []) or '(none)'}; "
                     f"{shown or 'no prompt/access_type'}")  # fmt: skip
    if "access_token_lifetime_seconds" in data:
        lifetime = data.get("access_token_lifetime_seconds")
        shown = "unknown" if lifetime is None else f"{lifetime} s ({lifetime / 86400:.2f} days)"
        got = "yes" if data.get("refresh_token_received") else "no"
        lines.append(f"Came back: access token lifetime {shown}; refresh token: {got}")
    if "minimum_lifetime_days" in data:
        lines.append(f"Accepted without a refresh token: {data['minimum_lifetime_days']:g} days")
    return lines


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `Tokenlife-Signature` header: t=<unix seconds>,v1=<HMAC-SHA256 of "t.body">."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver runs: the signature matches and is recent (replays are refused)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs(now - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))
