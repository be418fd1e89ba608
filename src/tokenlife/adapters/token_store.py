"""Connections in Redis: one hash each, token values encrypted, metadata readable.

Every write also places the connection on the refresh schedule (or takes it off), in
the same Lua script, so the hash and the schedule never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
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

# Fields that describe the token set; a new token set replaces all of them.
TOKEN_FIELDS = (
    "access_token", "refresh_token", "token_type", "expires_at", "lifetime_seconds",
    "lifetime_source", "scopes_granted",
)  # fmt: skip


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
    next_refresh_at: float | None = None
    last_refreshed_at: float | None = None
    consecutive_failures: int = 0
    failing_since: float | None = None
    refresh_failing_alerted: bool = False
    failure_window_start: float | None = None
    failure_window_count: int = 0
    expiry_alerts_sent: tuple[float, ...] = ()
    last_error: str | None = None

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
            "next_refresh_at": iso8601(self.next_refresh_at),
            "last_refreshed_at": iso8601(self.last_refreshed_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": iso8601(self.failing_since),
            "last_error": self.last_error,
        }


def token_fields(tokens: TokenSet, cipher: Cipher) -> dict[str, str]:
    """The hash fields of a token set; values encrypted, absent parts left out."""
    fields = {
        "token_type": tokens.token_type,
        "access_token": cipher.encrypt(tokens.access_token),
    }
    if tokens.refresh_token is not None:
        fields["refresh_token"] = cipher.encrypt(tokens.refresh_token)
    if tokens.expires_at is not None:
        fields["expires_at"] = repr(tokens.expires_at)
    if tokens.lifetime_seconds is not None:
        fields["lifetime_seconds"] = str(tokens.lifetime_seconds)
    if tokens.lifetime_source is not None:
        fields["lifetime_source"] = tokens.lifetime_source
    if tokens.granted_scopes is not None:
        fields["scopes_granted"] = " ".join(tokens.granted_scopes)
    return fields


class TokenStore:
    def __init__(self, redis: Redis, keys: Keys, cipher: Cipher) -> None:
        self._redis = redis
        self._keys = keys
        self._cipher = cipher
        self._save = scripts.register(redis, "save_connection")
        self._update = scripts.register(redis, "update_connection")

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
        next_check_at: float | None,
        now: float,
    ) -> int:
        """Replace the connection atomically (a new authorization); return its version."""
        fields = {
            "integration": integration,
            "connection_id": connection_id,
            "provider": provider,
            "status": status.value,
            "verdict": verdict.value,
            "scopes_requested": " ".join(scopes_requested),
            "last_refreshed_at": repr(now),
            **token_fields(tokens, self._cipher),
        }
        if next_check_at is not None:
            fields["next_refresh_at"] = repr(next_check_at)
        version = await self._save(
            keys=[
                self._keys.connection(integration, connection_id),
                self._keys.connections(integration),
                self._keys.schedule,
            ],
            args=[
                connection_id,
                repr(now),
                self._keys.member(integration, connection_id),
                "" if next_check_at is None else repr(next_check_at),
                json.dumps(fields),
            ],
        )
        return int(version)

    async def update(
        self,
        connection: Connection,
        *,
        now: float,
        tokens: TokenSet | None = None,
        set_fields: Mapping[str, str] | None = None,
        delete_fields: Iterable[str] = (),
        schedule_at: float | None = None,
        unschedule: bool = False,
    ) -> int | None:
        """Compare-and-set against `connection.version`; None when someone got there first.

        Every write bumps the version, so of two writers that read the same version only
        one succeeds. A new token set replaces every token field.
        """
        if schedule_at is not None and unschedule:
            raise ValueError("schedule_at and unschedule are exclusive")
        fields = dict(set_fields or {})
        deletions = set(delete_fields)
        if tokens is not None:
            new = token_fields(tokens, self._cipher)
            fields.update(new)
            deletions |= set(TOKEN_FIELDS) - set(new)
        if schedule_at is not None:
            fields["next_refresh_at"] = repr(schedule_at)
        elif unschedule:
            deletions.add("next_refresh_at")
        result = await self._update(
            keys=[
                self._keys.connection(connection.integration, connection.connection_id),
                self._keys.schedule,
            ],
            args=[
                str(connection.version),
                repr(now),
                self._keys.member(connection.integration, connection.connection_id),
                "-" if unschedule else ("" if schedule_at is None else repr(schedule_at)),
                json.dumps(fields),
                json.dumps(sorted(deletions - set(fields))),
            ],
        )
        return None if int(result) < 0 else int(result)

    async def get(self, integration: str, connection_id: str) -> Connection:
        return _connection(await self._hash(integration, connection_id))

    async def load(self, integration: str, connection_id: str) -> tuple[Connection, TokenSet]:
        """Metadata and the decrypted token set, read in one round trip."""
        raw = await self._hash(integration, connection_id)
        connection = _connection(raw)
        refresh = raw.get("refresh_token")
        tokens = TokenSet(
            access_token=self._cipher.decrypt(raw["access_token"]),
            token_type=connection.token_type,
            refresh_token=self._cipher.decrypt(refresh) if refresh else None,
            expires_at=connection.expires_at,
            lifetime_seconds=connection.lifetime_seconds,
            lifetime_source=connection.lifetime_source,
            granted_scopes=connection.scopes_granted,
        )
        return connection, tokens

    async def tokens(self, integration: str, connection_id: str) -> TokenSet:
        return (await self.load(integration, connection_id))[1]

    async def list_ids(self, integration: str) -> list[str]:
        members = cast(set[str], await self._redis.smembers(self._keys.connections(integration)))
        return sorted(members)

    async def _hash(self, integration: str, connection_id: str) -> dict[str, str]:
        raw = cast(
            dict[str, str],
            await self._redis.hgetall(self._keys.connection(integration, connection_id)),
        )
        if not raw:
            raise UnknownConnectionError(f"no connection {connection_id!r} in {integration!r}")
        return raw


def _float(raw: Mapping[str, str], name: str) -> float | None:
    return float(raw[name]) if name in raw else None


def _connection(raw: Mapping[str, str]) -> Connection:
    granted = raw.get("scopes_granted")
    sent = raw.get("expiry_alerts_sent", "")
    return Connection(
        integration=raw["integration"],
        connection_id=raw["connection_id"],
        provider=raw["provider"],
        status=Status(raw["status"]),
        verdict=Verdict(raw["verdict"]),
        token_type=raw["token_type"],
        expires_at=_float(raw, "expires_at"),
        lifetime_seconds=int(raw["lifetime_seconds"]) if "lifetime_seconds" in raw else None,
        lifetime_source=raw.get("lifetime_source"),
        scopes_requested=tuple(raw.get("scopes_requested", "").split()),
        scopes_granted=None if granted is None else tuple(granted.split()),
        has_refresh_token="refresh_token" in raw,
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        version=int(raw["version"]),
        next_refresh_at=_float(raw, "next_refresh_at"),
        last_refreshed_at=_float(raw, "last_refreshed_at"),
        consecutive_failures=int(raw.get("consecutive_failures", "0")),
        failing_since=_float(raw, "failing_since"),
        refresh_failing_alerted=raw.get("refresh_failing_alerted") == "1",
        failure_window_start=_float(raw, "failure_window_start"),
        failure_window_count=int(raw.get("failure_window_count", "0")),
        expiry_alerts_sent=tuple(float(x) for x in sent.split(",") if x),
        last_error=raw.get("last_error"),
    )
