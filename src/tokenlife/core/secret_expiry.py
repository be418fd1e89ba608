"""Client secrets that expire: when to warn ahead, and which refusal names an expired one.

Pure: the clock is an argument. An integration's `client_secret_expires_at` is an epoch
time; RFC 7591 §3.2.1 registration metadata says the same thing in the same field
(`client_secret_expires_at`, seconds since the epoch, 0 meaning it never expires).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

from tokenlife.core.integration import Integration

SECONDS_PER_DAY = 86400.0
# Days ahead of the expiry when alert.client_secret_expiring goes out, once each: a month
# to plan the change, a week, and the day before.
LEAD_DAYS: tuple[int, ...] = (30, 7, 1)
# A connection refused for an expired secret retries this much later (six hours): every
# attempt would be refused the same way. One probe per integration every
# SECRET_PROBE_INTERVAL_SECONDS (beat) finds the new secret sooner, and its success brings
# the integration's other connections in at once.
SECRET_EXPIRED_RETRY_SECONDS = 6 * 3600.0
SECRET_PROBE_INTERVAL_SECONDS = 600

# Refusals that name an expired client secret. Microsoft Entra: AADSTS7000222 "The provided
# client secret keys for app are expired" (AADSTS7000215, an invalid secret, is NOT an expiry:
# a wrong value needs a fix, not a wait). https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
_EXPIRED_MARKERS = (
    re.compile(r"\bAADSTS7000222\b"),
    # Other servers in plain words, the secret itself the subject of "expired" and nothing in
    # between ("client secret has expired", "client_secret expired"): a looser match took
    # "has not expired; it is invalid" or "the client certificate expired" for an expiry.
    re.compile(r"\bclient[ _]secret (?:has |is |was )?expired\b", re.IGNORECASE),
)


def to_epoch(value: date | datetime | int | float | None) -> float | None:
    """The integrations file's value as epoch seconds: a date means its start (00:00 UTC),
    a naive datetime is UTC, a number is RFC 7591's epoch seconds where 0 means never."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if value == 0 else float(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()


def due_lead(
    expires_at: float, now: float, sent: Iterable[int], leads: tuple[int, ...] = LEAD_DAYS
) -> int | None:
    """The lead (in days) whose alert is due at `now`: the smallest lead already reached
    and not yet sent. A worker that was down across several leads sends one alert, the
    nearest, not three in a row. None before the first lead, after the expiry (the expired
    alert takes over) or when the due one was sent."""
    if now >= expires_at:
        return None
    left = expires_at - now
    reached = [d for d in leads if left <= d * SECONDS_PER_DAY]
    if not reached:
        return None
    lead = min(reached)
    sent_set = set(sent)
    # A smaller lead sent means this stage is over too (the date moved, or a clock jump).
    if any(s <= lead for s in sent_set):
        return None
    return lead


def days_left(expires_at: float, now: float) -> float:
    return (expires_at - now) / SECONDS_PER_DAY


def names_expired_secret(error: str, description: str | None) -> bool:
    """An `invalid_client` whose description says the secret expired (not merely wrong)."""
    if error != "invalid_client" or not description:
        return False
    return any(marker.search(description) for marker in _EXPIRED_MARKERS)


def preflight_state(expires_at: float | None, now: float, warn_days: int = LEAD_DAYS[0]) -> str:
    """The secret's state for preflight: "expired", "expiring" (within `warn_days`) or
    "ok" ("ok" too when no date is known)."""
    if expires_at is None:
        return "ok"
    if expires_at <= now:
        return "expired"
    return "expiring" if expires_at - now <= warn_days * SECONDS_PER_DAY else "ok"


_GENERIC_FIX = (
    "Create a new client secret in the provider's developer console, put it in the "
    "integration's client_secret (or the variable its client_secret_env names), set "
    "client_secret_expires_at to the new expiry, and restart the worker and the API."
)


def rotation_steps(integration: Integration) -> tuple[str, str | None]:
    """(steps, source): the catalogue's `client_secret_rotation` fact, else generic steps."""
    facts = integration.preset.facts
    steps = facts.values.get("client_secret_rotation")
    if steps is None:
        return _GENERIC_FIX, None
    return steps, facts.sources.get("client_secret_rotation")
