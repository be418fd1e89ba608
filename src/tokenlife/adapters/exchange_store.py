"""How an exchange ends, each in one Lua step: the connection saved with its events and
the state's "exchanged" mark, or the account change refused, or nothing stored."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.connection_record import connection_fields, save_args, save_keys
from tokenlife.adapters.connection_write import encode_alert
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import EXCHANGE_CLAIM_TTL_SECONDS, Keys
from tokenlife.adapters.storage_errors import storage_errors
from tokenlife.core.connection_alert import shown_after_all
from tokenlife.core.events import Event
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet


class SaveOutcome(StrEnum):
    SAVED = "saved"
    # The state's claim already holds an outcome: the task was delivered twice.
    ALREADY_DONE = "done"
    # The stored connection belongs to another account; nothing of it changed.
    SUBJECT_MISMATCH = "subject_mismatch"
    # The stored connection is bound to an account and the provider didn't say who this
    # one is (no ID token); nothing of it changed.
    SUBJECT_UNKNOWN = "subject_unknown"


@dataclass(frozen=True, slots=True)
class ExchangeSave:
    outcome: SaveOutcome
    summary: dict[str, Any]  # what the state's claim now holds


@dataclass(frozen=True, slots=True)
class Authorized:
    """A new token set for a connection, with what it was judged to be."""

    integration: Integration
    connection_id: str
    tokens: TokenSet
    verdict: Verdict
    status: Status
    scopes_requested: tuple[str, ...]
    next_check_at: float | None
    subject: str | None  # the account (OIDC `sub`), None when the provider didn't say


class ExchangeStore:
    def __init__(
        self, redis: Redis, keys: Keys, cipher: Cipher, events_max_length: int = 100_000
    ) -> None:
        self._keys = keys
        self._cipher = cipher
        self._events_max_length = events_max_length
        self._save = scripts.register(redis, "save_connection")

    async def save(
        self,
        state: str,
        authorized: Authorized,
        now: float,
        *,
        events: Sequence[Event],
        summary: Mapping[str, Any],
        refusal: tuple[Event, Mapping[str, Any]],
    ) -> ExchangeSave:
        """Save the connection, publish `events` and mark the state with `summary`.

        When the stored connection is bound to an account and `authorized.subject` is
        another one, or None (unknown), and the integration doesn't allow an account
        change, the connection stays as it was: the `refusal` event is published and its
        summary kept instead. A save with an unknown subject never erases a stored one.
        Raises StorageUnavailableError when Redis can't be reached (nothing was written,
        or all of it: a caller retries, and a retry after a lost reply finds the mark).
        """
        a, integration = authorized, authorized.integration
        fields = connection_fields(
            integration.name, a.connection_id, integration.provider, a.tokens, self._cipher,
            verdict=a.verdict, status=a.status, scopes_requested=a.scopes_requested,
            next_check_at=a.next_check_at, now=now,
        )  # fmt: skip
        refused_event, refused_summary = refusal
        async with storage_errors():
            reply = await self._save(
                keys=save_keys(
                    self._keys, integration.name, a.connection_id, state, integration.provider
                ),
                args=[
                    *save_args(self._keys, integration.name, a.connection_id, now,
                               a.next_check_at, fields, a.subject),
                    "1" if integration.allow_account_change else "",
                    json.dumps([wire(e) for e in events]),
                    # A new authorization replaces the record: its alerts start afresh.
                    encode_alert(shown_after_all(None, events)),
                    json.dumps(summary),
                    json.dumps(wire(refused_event)),
                    json.dumps(refused_summary),
                    self._events_max_length,
                    EXCHANGE_CLAIM_TTL_SECONDS * 1000,
                    "1",  # KEYS[4] is the state's claim
                ],
            )  # fmt: skip
        return ExchangeSave(SaveOutcome(reply[0]), json.loads(reply[2]))


def wire(event: Event) -> list[str]:
    """An event as a Lua script publishes it: type and compact JSON data."""
    return [event.type, json.dumps(event.data, separators=(",", ":"))]
