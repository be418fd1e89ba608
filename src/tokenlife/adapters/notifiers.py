"""Notification targets: Apprise URLs (Slack, Teams, PagerDuty, e-mail, ntfy, ...) and a
signed JSON webhook for machines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import aiohttp
import apprise

from tokenlife.core.notification_payload import notify_type
from tokenlife.core.notifications import sign
from tokenlife.errors import DeliveryError


class Target(Protocol):
    name: str

    async def send(self, title: str, body: str, payload: dict[str, Any], now: float) -> None:
        """Deliver or raise DeliveryError."""


@dataclass
class AppriseTarget:
    name: str
    url: str = field(repr=False)  # Apprise URLs carry tokens

    async def send(self, title: str, body: str, payload: dict[str, Any], now: float) -> None:
        notifier = apprise.Apprise()
        if not notifier.add(with_incident(self.url, payload)):
            raise DeliveryError(f"target {self.name}: not a valid Apprise URL")
        # The notify type tells PagerDuty the incident's severity and Slack/Teams the colour;
        # the payload's kind and severity decide it, so a replayed dead letter keeps it.
        kind = apprise.NotifyType(
            notify_type(str(payload.get("kind")), str(payload.get("severity")))
        )
        if not await notifier.async_notify(body=body, title=title, notify_type=kind):
            raise DeliveryError(f"target {self.name}: Apprise could not deliver")


def with_incident(url: str, payload: dict[str, Any]) -> str:
    """A pagerduty:// URL with the notification's incident key as its `dedup` and
    `action=map`, unless the URL sets them: Apprise's PagerDuty plugin triggers with that
    key and, on a `success` notification, resolves the incident with the same key
    (https://github.com/caronc/apprise/blob/master/apprise/plugins/pagerduty.py); without
    them, every RESOLVED notification would open an incident of its own."""
    key = payload.get("incident_key")
    parts = urlsplit(url)
    if parts.scheme.lower() != "pagerduty" or not key:
        return url
    given = parse_qs(parts.query)
    extra = [f"{name}={value}" for name, value in (("dedup", key), ("action", "map"))
             if name not in given]  # fmt: skip
    if not extra:
        return url
    query = "&".join([parts.query, *extra] if parts.query else extra)
    return parts._replace(query=query).geturl()


@dataclass
class WebhookTarget:
    """POSTs the notification as JSON, signed with HMAC-SHA256 (docs/alerts.md#webhooks)."""

    name: str
    url: str
    secret: bytes = field(repr=False)
    session: aiohttp.ClientSession = field(repr=False)
    timeout: float = 10.0

    async def send(self, title: str, body: str, payload: dict[str, Any], now: float) -> None:
        content = json.dumps({"title": title, "text": body, **payload}).encode()
        headers = {
            "Content-Type": "application/json",
            "Tokenlife-Signature": sign(self.secret, int(now), content),
            # Receivers can drop a repeat (a worker that died after sending, before acking).
            "Idempotency-Key": str(payload.get("notification_id", "")),
        }
        try:
            async with self.session.post(
                self.url, data=content, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:  # fmt: skip
                if response.status >= 300:
                    raise DeliveryError(f"target {self.name}: HTTP {response.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryError(f"target {self.name}: {type(exc).__name__}") from None
