"""What a write to a connection (update_connection.lua) changes, says back, asks of the
backoff set, and does to the alert it shows; shared by TokenStore, ExchangeStore and
DurableWriter."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

from tokenlife.core.connection_alert import shown_after
from tokenlife.core.events import Event
from tokenlife.core.tokens import TokenSet

if TYPE_CHECKING:
    from tokenlife.adapters.connection_record import Connection
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


def alert_change(connection: Connection, event: Event | None) -> str:
    """What update_connection.lua does to the connection's `last_alert`: the JSON to store,
    '-' to delete it, '' to leave it (core.connection_alert decides). Deciding from the
    record the caller read is atomic with the write: it lands only on that version."""
    if event is None:
        return ""
    shown = shown_after(connection.last_alert, event)
    if shown == connection.last_alert:
        return ""
    return "-" if shown is None else encode_alert(shown)


def encode_alert(alert: Mapping[str, Any] | None) -> str:
    """A connection's alert as stored ('' for none)."""
    return "" if alert is None else json.dumps(alert, separators=(",", ":"))
