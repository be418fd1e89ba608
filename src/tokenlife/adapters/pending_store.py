"""Pending authorizations, keyed by OAuth state: stored once, consumed once."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import (
    EXCHANGE_CLAIM_TTL_SECONDS,
    PENDING_AUTHORIZATION_TTL_SECONDS,
    Keys,
)
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.errors import InvalidStateError


class PendingStore:
    def __init__(self, redis: Redis, keys: Keys, cipher: Cipher) -> None:
        self._redis = redis
        self._keys = keys
        self._cipher = cipher
        self._put = scripts.register(redis, "put_pending")
        self._claim = scripts.register(redis, "claim_state")

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

    async def claim(self, state: str, owner: str) -> PendingAuthorization:
        """Consume the state for `owner`; the same owner may claim again while retrying."""
        raw = await self._claim(
            keys=[self._keys.pending(state), self._keys.exchanging(state)],
            args=[owner, EXCHANGE_CLAIM_TTL_SECONDS * 1000],
        )
        if raw is None:
            raise InvalidStateError("unknown, expired or already used state")
        record = json.loads(raw)
        verifier = record.pop("verifier", None)
        return PendingAuthorization(
            **record, verifier=self._cipher.decrypt(verifier) if verifier else None
        )

    async def read(self, state: str) -> PendingAuthorization | None:
        """The record still pending under `state`, left in place; None once claimed, expired
        or never stored. Without the PKCE verifier: only the exchange needs that."""
        raw = await self._redis.get(self._keys.pending(state))
        if raw is None:
            return None
        record = json.loads(raw)
        record.pop("verifier", None)
        return PendingAuthorization(**record)

    async def release(self, state: str) -> None:
        """The exchange is over, for good or ill; the state can never be used again."""
        await self._redis.delete(self._keys.exchanging(state))
