"""Dashboard logins in Redis. The browser holds a random session id in a cookie; Redis holds
a hash under the id's SHA-256 with the API key's SHA-256 (what web/auth.py compares, never
the key) and the session's CSRF token. Someone who can read Redis finds no key and no id
to present."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import DASHBOARD_SESSION_TTL_SECONDS, Keys


@dataclass(frozen=True, slots=True)
class DashboardSession:
    key_digest: bytes  # sha256 of the API key the operator logged in with
    csrf_token: str
    created_at: float


class DashboardSessions:
    def __init__(
        self, redis: Redis, keys: Keys, ttl_seconds: int = DASHBOARD_SESSION_TTL_SECONDS
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._set_notice = scripts.register(redis, "set_notice")

    def _key(self, session_id: str) -> str:
        return self._keys.dashboard_session(hashlib.sha256(session_id.encode()).hexdigest())

    async def create(self, key_digest: bytes, now: float) -> str:
        """A new session; its id is returned once, for the cookie."""
        # 32 bytes: 256 bits, beyond guessing.
        session_id = secrets.token_urlsafe(32)
        key = self._key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={
                "key_digest": key_digest.hex(),
                "csrf": secrets.token_urlsafe(32),
                "created_at": repr(now),
            })  # fmt: skip
            pipe.expire(key, self._ttl)
            await pipe.execute()
        return session_id

    async def get(self, session_id: str) -> DashboardSession | None:
        raw = cast(dict[str, str], await self._redis.hgetall(self._key(session_id)))
        try:
            return DashboardSession(
                bytes.fromhex(raw["key_digest"]), raw["csrf"], float(raw["created_at"])
            )
        except (KeyError, ValueError):  # gone, expired, or not a whole record
            return None

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(self._key(session_id))

    async def set_notice(self, session_id: str, notice: str) -> bool:
        """A one-time message for the next page this session sees (post/redirect/get);
        False when the session is gone (logged out meanwhile): nothing is written."""
        return bool(await self._set_notice(keys=[self._key(session_id)], args=[notice]))

    async def pop_notice(self, session_id: str) -> str | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._key(session_id), "notice")
            pipe.hdel(self._key(session_id), "notice")
            notice, _ = await pipe.execute()
        return notice if isinstance(notice, str) else None
