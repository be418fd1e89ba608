"""Pending authorizations, keyed by OAuth state: stored once, consumed once, and once
the exchange has ended, its outcome kept so a task delivered twice gets it back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import (
    EXCHANGE_CLAIM_TTL_SECONDS,
    PENDING_AUTHORIZATION_TTL_SECONDS,
    Keys,
)
from tokenlife.adapters.storage_errors import storage_errors
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.events import Event
from tokenlife.errors import InvalidStateError


@dataclass(frozen=True, slots=True)
class ExchangeClaim:
    """A claimed state: the pending record to exchange, or the outcome of an exchange
    that already ended (`finished`, the task's summary)."""

    pending: PendingAuthorization | None = None
    # When an earlier run of the same task sent the code (None: never sent).
    sent_at: float | None = None
    finished: dict[str, Any] | None = None
    # Another attempt holds the state and has not ended: its outcome is still to come.
    in_progress: bool = False


class PendingStore:
    def __init__(
        self, redis: Redis, keys: Keys, cipher: Cipher, events_max_length: int = 100_000
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._cipher = cipher
        self._events_max_length = events_max_length
        self._put = scripts.register(redis, "put_pending")
        self._claim = scripts.register(redis, "claim_state")
        self._finish = scripts.register(redis, "finish_exchange")

    def new_state(self, integration: str, connection_id: str) -> str:
        """A fresh OAuth state (256 random bits) in the connection's shard: the exchange's
        last step marks the state's claim and saves the connection in one script, so on a
        Cluster their keys share a slot. About `shards` draws; the state keeps 256 bits
        less log2(shards) of entropy."""
        wanted = self._keys.shard(integration, connection_id)
        while True:
            state = secrets.token_urlsafe(32)
            if self._keys.state_shard(state) == wanted:
                return state

    async def put(self, state: str, pending: PendingAuthorization) -> None:
        record = pending.public_dict()
        if pending.verifier is not None:
            record["verifier"] = self._cipher.encrypt(pending.verifier)
        created = await self._put(
            keys=[self._keys.pending(state), self._keys.exchanging(state)],
            args=[json.dumps(record), PENDING_AUTHORIZATION_TTL_SECONDS],
        )
        if not created:  # 256 random bits never collide; a caller reused a state
            raise InvalidStateError("state is already pending")

    async def claim(self, state: str, owner: str) -> ExchangeClaim:
        """Consume the state for `owner`; the same owner may claim again while retrying.

        Once the exchange has ended, anyone gets its outcome; before, another owner gets
        a claim `in_progress` (nothing to exchange). Raises InvalidStateError for
        an unknown, expired or foreign state; StorageUnavailableError when Redis is down.
        """
        async with storage_errors():
            reply = await self._claim(
                keys=[self._keys.pending(state), self._keys.exchanging(state)],
                args=[owner, EXCHANGE_CLAIM_TTL_SECONDS * 1000],
            )
        if not reply:
            raise InvalidStateError("unknown, expired or already used state")
        if reply[0] == "busy":
            return ExchangeClaim(in_progress=True)
        if reply[0] == "done":
            return ExchangeClaim(finished=json.loads(reply[1]))
        record = json.loads(reply[1])
        verifier = record.pop("verifier", None)
        pending = PendingAuthorization(
            **record, verifier=self._cipher.decrypt(verifier) if verifier else None
        )
        return ExchangeClaim(pending=pending, sent_at=float(reply[2]) if reply[2] else None)

    async def note_sent(self, state: str, now: float) -> None:
        """The code is about to go to the provider: a later run must not send it again."""
        key = self._keys.exchanging(state)
        async with storage_errors(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "sent_at", repr(now))
            pipe.pexpire(key, EXCHANGE_CLAIM_TTL_SECONDS * 1000)
            await pipe.execute()

    async def forget_sent(self, state: str) -> None:
        """The provider answered with a transient error: a retry may send the code again."""
        async with storage_errors():
            await self._redis.hdel(self._keys.exchanging(state), "sent_at")

    async def finish(
        self, state: str, event: Event, summary: dict[str, Any], also: Sequence[Event] = ()
    ) -> dict[str, Any]:
        """Publish `event` (then `also`, e.g. its alert) and keep `summary` as the
        exchange's outcome, in one step.

        Returns the outcome kept: an earlier one wins (a run delivered twice).
        """
        async with storage_errors():
            kept = await self._finish(
                # The state's shard is its connection's: the events go where its others do.
                keys=[
                    self._keys.exchanging(state),
                    self._keys.events(self._keys.state_shard(state)),
                ],
                args=[
                    event.type,
                    json.dumps(event.data, separators=(",", ":")),
                    json.dumps(summary),
                    self._events_max_length,
                    EXCHANGE_CLAIM_TTL_SECONDS * 1000,
                    json.dumps([[e.type, json.dumps(e.data, separators=(",", ":"))] for e in also]),
                ],
            )
        result: dict[str, Any] = json.loads(kept)
        return result

    async def read(self, state: str) -> PendingAuthorization | None:
        """The record still pending under `state`, left in place; None once claimed, expired
        or never stored. Without the PKCE verifier: only the exchange needs that."""
        raw = await self._redis.get(self._keys.pending(state))
        if raw is None:
            return None
        record = json.loads(raw)
        record.pop("verifier", None)
        return PendingAuthorization(**record)
