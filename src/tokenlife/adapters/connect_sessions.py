"""Connect sessions in Redis: stored under the token's hash, consumed once, gone after a TTL."""

from __future__ import annotations

import json
import secrets

from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys
from tokenlife.core.connect_session import ConnectSession, SessionRequest, token_hash


class ConnectSessions:
    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds

    async def create(self, request: SessionRequest, now: float) -> tuple[str, ConnectSession]:
        """A new session; the token is returned once and only its hash is kept."""
        # 32 bytes: 256 bits, beyond guessing (RFC 6749 §10.10 asks for at least 128).
        token = secrets.token_urlsafe(32)
        session = ConnectSession(
            integration=request.integration,
            connection_id=request.connection_id,
            return_to=request.return_to,
            end_user=request.end_user,
            created_at=now,
            expires_at=now + self._ttl,
        )
        key = self._keys.connect_session(request.integration, token_hash(token))
        await self._redis.set(key, json.dumps(session.as_dict()), ex=self._ttl)
        return token, session

    async def consume(self, integration: str, token: str) -> ConnectSession | None:
        """The session the token stands for, deleted in the same step (GETDEL, Redis 6.2):
        of two browsers racing with one link, exactly one gets it. None for a token that is
        unknown, used, expired, or was made for another integration (which stays usable)."""
        raw = await self._redis.getdel(self._keys.connect_session(integration, token_hash(token)))
        if raw is None:
            return None
        record = json.loads(raw)
        return ConnectSession(**record)
