"""What a write to a connection (update_connection.lua) changes, says back, asks of the
backoff set, and keeps of an alert; shared by TokenStore, ExchangeStore and DurableWriter."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypedDict

from tokenlife.core.events import Event
from tokenlife.core.tokens import TokenSet

if TYPE_CHECKING:
    from tokenlife.adapters.locks import Lease


class Backoff(StrEnum):
    """What a write does to the connection's place among its provider's waiting retries."""

    LEAVE = ""
    ADD = "add"
    REMOVE = "rem"


class Change(TypedDict, total=False):
    """The keywords of a compare-and-set write (TokenStore.write), named once for the
    writers that pass them on; each one left out changes nothing."""

    tokens: TokenSet | None  # a new token set replaces every token field
    set_fields: Mapping[str, str] | None
    delete_fields: Iterable[str]
    schedule_at: float | None
    unschedule: bool  # off the schedule (exclusive with schedule_at)
    event: Event | None  # published when the write lands
    lease: Lease | None  # given back either way
    backoff: Backoff


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
