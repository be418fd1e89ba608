"""The alert a connection shows (its `last_alert`: API, CLI, dashboard): the most severe
problem still open, with its fixes.

Every alert still goes to the event stream and to people; this only decides what the
connection record keeps. Without it, `alert.access_token_expiring` (no fixes) replaced
`alert.refresh_token_missing` half a second after the connect, and nobody could read why
the connection would lapse any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tokenlife.core import events
from tokenlife.core.events import Event
from tokenlife.core.notifications import CLEARS, SEVERITY

# How severe, as a number to compare; the severity of each alert type is SEVERITY's.
LEVELS = {"info": 1, "warning": 2, "critical": 3}
# Events that end a connection's open problem. A refresh that worked proves the connection
# stays connected, so whatever it showed is over (`None`: every alert). A new authorization
# replaces the whole record (save_connection.lua), so it starts from its own alerts.
RESOLVED_BY: dict[str, frozenset[str] | None] = {
    events.TOKEN_REFRESHED: None,
    **{kind: frozenset(cleared) for kind, cleared in CLEARS.items()},
}


def summary(event: Event) -> dict[str, Any] | None:
    """What a connection keeps of an alert: its type, time and the fixes named."""
    if not event.type.startswith("alert."):
        return None
    fixes = [c.get("fix") for c in event.data.get("diagnosis") or [] if c.get("fix")]
    return {"type": event.type, "occurred_at": event.data.get("occurred_at"), "fixes": fixes}


def standing(alert: Mapping[str, Any]) -> tuple[int, bool]:
    """Severity first; at equal severity an alert that says what to do outranks one that
    doesn't."""
    level = LEVELS[SEVERITY.get(str(alert.get("type")), "info")]
    return level, bool(alert.get("fixes"))


def shown_after(stored: Mapping[str, Any] | None, event: Event) -> Mapping[str, Any] | None:
    """The connection's alert once `event` is written over `stored`.

    An event that resolves the stored problem clears it. An alert replaces the stored one
    unless it stands lower (`standing`); the same standing replaces it (newer news). A
    different, graver problem that replaces an open one keeps the earlier fixes after its
    own: a lapse that follows a missing refresh token needs the reconnect *and* the cause
    fixed, or it lapses again.
    """
    current = stored if stored and stored.get("type") else None
    resolves = RESOLVED_BY.get(event.type, frozenset())
    if current is not None and (resolves is None or current["type"] in resolves):
        return None
    new = summary(event)
    if new is None:
        return current
    if current is None:
        return new
    if standing(new) < standing(current):
        return current
    if new["type"] != current["type"]:
        new["fixes"] = _merged(new["fixes"], current.get("fixes") or ())
    return new


def shown_after_all(
    stored: Mapping[str, Any] | None, published: Iterable[Event]
) -> Mapping[str, Any] | None:
    """`shown_after` over events written together, in order."""
    for event in published:
        stored = shown_after(stored, event)
    return stored


def _merged(first: list[Any], then: Iterable[Any]) -> list[Any]:
    return [*first, *(fix for fix in then if fix not in first)]
