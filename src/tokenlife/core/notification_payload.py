"""What a notification carries to machines: the webhook's JSON body (docs/alerts.md#webhooks),
Apprise's notify type, and the incident key that pairs an alert with its resolution; and the
way back from a stored payload to a notification, to send a dead letter again. Pure."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from tokenlife.core.notifications import Alert, Notification

PAYLOAD_EVENTS = 50  # a storm's payload carries the first few events and every id

# Apprise's notify types (apprise.NotifyType, https://github.com/caronc/apprise/wiki/Development_API):
# PagerDuty maps failure to a critical event and warning to a warning one
# (PAGERDUTY_SEVERITY_MAP in https://github.com/caronc/apprise/blob/master/apprise/plugins/pagerduty.py),
# Slack and Teams colour the message by it.
NotifyType = Literal["failure", "warning", "info", "success"]
NOTIFY_TYPES: dict[str, NotifyType] = {"critical": "failure", "warning": "warning",
                                       "info": "info"}  # fmt: skip


def notify_type(kind: str, severity: str) -> NotifyType:
    """Apprise's notify type: success for a resolution, else by the alert's severity."""
    return "success" if kind == "resolved" else NOTIFY_TYPES.get(severity, "info")


def incident_key(notification: Notification) -> str:
    """The incident a notification is about: a resolution carries the key of the incident
    its alert opened (kept per target while the alert's connections clear one at a time,
    services/incidents.py); an alert's is made from its connections and alert type, so a
    receiver, and PagerDuty, can close what the alert opened."""
    if notification.incident:
        return notification.incident
    keys = sorted(alert.dedup_key() for alert in notification.alerts)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]


def payload(notification: Notification) -> dict[str, Any]:
    ids = [a.event_id for a in notification.alerts]
    digest = hashlib.sha256(f"{notification.target}:{notification.kind}:{','.join(ids)}".encode())
    severity = notification.alerts[0].severity
    return {
        "notification_id": digest.hexdigest()[:32],
        "kind": notification.kind,
        "type": notification.type,
        "severity": severity,
        "notify_type": notify_type(notification.kind, severity),
        "incident_key": incident_key(notification),
        "integration": notification.integration,
        "count": len(notification.alerts),
        "connection_ids": [a.connection_id for a in notification.alerts],
        "events": [dict(a.data) for a in notification.alerts[:PAYLOAD_EVENTS]],
    }


def notification_from(target: str, payload: dict[str, Any]) -> Notification:
    """The notification a payload was made from, to render its text again: its first events
    as they were, the connections past them by id only (a storm's payload keeps 50 events
    but every connection id)."""
    type_ = str(payload.get("type", ""))
    integration = str(payload.get("integration") or "-")
    events = [e for e in payload.get("events") or [] if isinstance(e, dict)]
    alerts = [Alert(str(e.get("event_id", "")), type_, e) for e in events]
    for cid in (payload.get("connection_ids") or [])[len(events) :]:
        alerts.append(Alert("", type_, {"integration": integration, "connection_id": cid}))
    if not alerts:
        alerts.append(Alert("", type_, {"integration": integration}))
    kind: Literal["alert", "resolved"] = (
        "resolved" if payload.get("kind") == "resolved" else "alert"
    )
    incident = str(payload.get("incident_key") or "")
    return Notification(target, kind, type_, integration, tuple(alerts), incident)
