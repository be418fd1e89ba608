"""A per-connection lock and per-provider concurrency slots, both in Redis.

The lock is an efficiency measure, not a guarantee: the save after a refresh is a
compare-and-set on the version, so a worker whose lock expired can't overwrite newer
tokens. Slots are shared by every worker process, so an outage of one provider ties up
at most its own slots, not the workers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import REFRESH_LOCK_TTL_SECONDS, Keys


@dataclass(slots=True)
class Lease:
    """A connection's lock, and maybe a provider slot, held for one refresh."""

    integration: str
    connection_id: str
    provider: str
    lock_token: str
    slot_token: str | None
    released: bool = False
    # A refresh owns it while its request may be in flight: only the refresh gives it back.
    handed_over: bool = False

    @classmethod
    def new(cls, integration: str, connection_id: str, provider: str) -> Lease:
        return cls(integration, connection_id, provider, secrets.token_hex(16),
                   secrets.token_hex(16))  # fmt: skip


class Locks:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._release = scripts.register(redis, "release_lock")

    async def acquire(self, integration: str, connection_id: str) -> str | None:
        """A token proving we hold the connection's lock, or None when someone else does."""
        token = secrets.token_hex(16)
        taken = await self._redis.set(
            self._keys.lock(integration, connection_id),
            token,
            nx=True,
            px=REFRESH_LOCK_TTL_SECONDS * 1000,
        )
        return token if taken else None

    async def release(self, integration: str, connection_id: str, token: str) -> None:
        await self._release(keys=[self._keys.lock(integration, connection_id)], args=[token])

    async def give_back(self, lease: Lease) -> None:
        """Release what a lease holds, once; both in one round trip. A no-op while a
        refresh owns it (its caller was cancelled, the request goes on)."""
        if lease.released or lease.handed_over:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._release(
                keys=[self._keys.lock(lease.integration, lease.connection_id)],
                args=[lease.lock_token],
                client=pipe,
            )
            if lease.slot_token is not None:
                pipe.zrem(self._keys.provider_slots(lease.provider), lease.slot_token)
            await pipe.execute()
        lease.released = True

    async def held(self, integration: str, connection_id: str) -> bool:
        return bool(await self._redis.exists(self._keys.lock(integration, connection_id)))
