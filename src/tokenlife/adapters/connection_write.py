"""What a write to a connection (update_connection.lua) says back, asks of the backoff
set, and keeps of an alert; shared by TokenStore and ExchangeStore."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from tokenlife.core.events import Event


class Backoff(StrEnum):
    """What a write does to the connection's place among its provider's waiting retries."""

    LEAVE = ""
    ADD = "add"
    REMOVE = "rem"


@dataclass(frozen=True, slots=True)
class Written:
    """What a compare-and-set write did."""

    version: int | None  # None: someone got there first, nothing written
    # After a write that left the provider's backoff set: how many others still wait.
    backoff_waiting: int = 0


def last_alert(event: Event) -> str:
    """What a connection keeps of its latest alert: type, time and the fixes named."""
    if not event.type.startswith("alert."):
        return ""
    fixes = [c.get("fix") for c in event.data.get("diagnosis") or [] if c.get("fix")]
    return json.dumps(
        {"type": event.type, "occurred_at": event.data.get("occurred_at"), "fixes": fixes},
        separators=(",", ":"),
    )
