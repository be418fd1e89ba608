"""A per-connection lock and per-provider concurrency slots, both in Redis.

The lock is an efficiency measure, not a guarantee: the save after a refresh is a
compare-and-set on the version, so a worker whose lock expired can't overwrite newer
tokens. Slots are shared by every worker process, so an outage of one provider ties up
at most its own slots, not the workers.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import PROVIDER_SLOT_TTL_SECONDS, REFRESH_LOCK_TTL_SECONDS, Keys


class Locks:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._release = scripts.register(redis, "release_lock")
        self._acquire_slot = scripts.register(redis, "acquire_slot")

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

    async def held(self, integration: str, connection_id: str) -> bool:
        return bool(await self._redis.exists(self._keys.lock(integration, connection_id)))

    async def acquire_slot(self, provider: str, limit: int, now: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._acquire_slot(
            keys=[self._keys.provider_slots(provider)],
            args=[repr(now), repr(now + PROVIDER_SLOT_TTL_SECONDS), limit, token],
        )
        return token if taken else None

    async def release_slot(self, provider: str, token: str) -> None:
        await self._redis.zrem(self._keys.provider_slots(provider), token)
