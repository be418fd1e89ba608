"""Connections in Redis: one hash each, token values encrypted, metadata readable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.core.events import iso8601
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import UnknownConnectionError


@dataclass(frozen=True, slots=True)
class Connection:
    """What a stored connection says about itself; never the token values."""

    integration: str
    connection_id: str
    provider: str
    status: Status
    verdict: Verdict
    token_type: str
    expires_at: float | None
    lifetime_seconds: int | None
    lifetime_source: str | None
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...] | None
    has_refresh_token: bool
    created_at: float
    updated_at: float
    version: int

    def as_json(self) -> dict[str, Any]:
        return {
            "integration": self.integration,
            "connection_id": self.connection_id,
            "provider": self.provider,
            "status": self.status.value,
            "verdict": self.verdict.value,
            "token_type": self.token_type,
            "expires_at": iso8601(self.expires_at),
            "access_token_lifetime_seconds": self.lifetime_seconds,
            "lifetime_source": self.lifetime_source,
            "scopes_requested": list(self.scopes_requested),
            "scopes_granted": None if self.scopes_granted is None else list(self.scopes_granted),
            "has_refresh_token": self.has_refresh_token,
            "created_at": iso8601(self.created_at),
            "updated_at": iso8601(self.updated_at),
            "version": self.version,
        }


class TokenStore:
    def __init__(self, redis: Redis, keys: Keys, cipher: Cipher) -> None:
        self._redis = redis
        self._keys = keys
        self._cipher = cipher
        self._save = scripts.register(redis, "save_connection")

    async def save(
        self,
        *,
        integration: str,
        connection_id: str,
        provider: str,
        tokens: TokenSet,
        verdict: Verdict,
        status: Status,
        scopes_requested: tuple[str, ...],
        now: float,
    ) -> int:
        """Replace the connection atomically; return its new version."""
        fields: dict[str, str] = {
            "integration": integration,
            "connection_id": connection_id,
            "provider": provider,
            "status": status.value,
            "verdict": verdict.value,
            "token_type": tokens.token_type,
            "scopes_requested": " ".join(scopes_requested),
            "access_token": self._cipher.encrypt(tokens.access_token),
        }
        if tokens.refresh_token is not None:
            fields["refresh_token"] = self._cipher.encrypt(tokens.refresh_token)
        if tokens.expires_at is not None:
            fields["expires_at"] = repr(tokens.expires_at)
        if tokens.lifetime_seconds is not None:
            fields["lifetime_seconds"] = str(tokens.lifetime_seconds)
        if tokens.lifetime_source is not None:
            fields["lifetime_source"] = tokens.lifetime_source
        if tokens.granted_scopes is not None:
            fields["scopes_granted"] = " ".join(tokens.granted_scopes)
        args: list[str] = [connection_id, repr(now)]
        for name, value in fields.items():
            args += [name, value]
        version = await self._save(
            keys=[
                self._keys.connection(integration, connection_id),
                self._keys.connections(integration),
            ],
            args=args,
        )
        return int(version)

    async def get(self, integration: str, connection_id: str) -> Connection:
        return _connection(await self._hash(integration, connection_id))

    async def tokens(self, integration: str, connection_id: str) -> TokenSet:
        """Decrypt the stored token set (for the token API and refreshes)."""
        raw = await self._hash(integration, connection_id)
        connection = _connection(raw)
        refresh = raw.get("refresh_token")
        return TokenSet(
            access_token=self._cipher.decrypt(raw["access_token"]),
            token_type=connection.token_type,
            refresh_token=self._cipher.decrypt(refresh) if refresh else None,
            expires_at=connection.expires_at,
            lifetime_seconds=connection.lifetime_seconds,
            lifetime_source=connection.lifetime_source,
            granted_scopes=connection.scopes_granted,
        )

    async def _hash(self, integration: str, connection_id: str) -> dict[str, str]:
        raw = cast(
            dict[str, str],
            await self._redis.hgetall(self._keys.connection(integration, connection_id)),
        )
        if not raw:
            raise UnknownConnectionError(f"no connection {connection_id!r} in {integration!r}")
        return raw

    async def list_ids(self, integration: str) -> list[str]:
        members = cast(set[str], await self._redis.smembers(self._keys.connections(integration)))
        return sorted(members)


def _connection(raw: dict[str, str]) -> Connection:
    granted = raw.get("scopes_granted")
    return Connection(
        integration=raw["integration"],
        connection_id=raw["connection_id"],
        provider=raw["provider"],
        status=Status(raw["status"]),
        verdict=Verdict(raw["verdict"]),
        token_type=raw["token_type"],
        expires_at=float(raw["expires_at"]) if "expires_at" in raw else None,
        lifetime_seconds=int(raw["lifetime_seconds"]) if "lifetime_seconds" in raw else None,
        lifetime_source=raw.get("lifetime_source"),
        scopes_requested=tuple(raw.get("scopes_requested", "").split()),
        scopes_granted=None if granted is None else tuple(granted.split()),
        has_refresh_token="refresh_token" in raw,
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        version=int(raw["version"]),
    )
