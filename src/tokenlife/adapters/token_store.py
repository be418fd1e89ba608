"""Connections in Redis: one hash each, token values encrypted, metadata readable.

Every write also places the connection on the refresh schedule (or takes it off), in
the same Lua script, so the hash and the schedule never disagree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.connection_record import (
    TOKEN_FIELDS,
    Connection,
    connection_fields,
    parse_connection,
    save_args,
    save_keys,
    token_fields,
)
from tokenlife.adapters.connection_write import Backoff, Change, Written, alert_change
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import UnknownConnectionError

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Backoff and Written live in connection_write.py; importable from here too.
__all__ = ["Backoff", "TokenStore", "Written"]


class TokenStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        cipher: Cipher,
        events_max_length: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        # Only for what `get` shows: a lapsed token's status (Connection.effective).
        self._clock = clock
        self._keys = keys
        self._cipher = cipher
        self._save = scripts.register(redis, "save_connection")
        self._delete = scripts.register(redis, "delete_connection")
        self._update = scripts.register(redis, "update_connection")
        # Events published inside a write go to the same capped stream as EventStream's.
        self._events_max_length = events_max_length

    def decrypt(self, ciphertext: str) -> str:
        return self._cipher.decrypt(ciphertext)

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
        subject: str | None = None,
    ) -> int:
        """Replace the connection atomically (a new authorization); return its version.

        An exchange saves through ExchangeStore instead, which also marks the state.
        """
        fields = connection_fields(
            integration, connection_id, provider, tokens, self._cipher,
            verdict=verdict, status=status, scopes_requested=scopes_requested,
            next_check_at=next_check_at, now=now,
        )  # fmt: skip
        reply = await self._save(
            keys=save_keys(self._keys, integration, connection_id, None, provider),
            args=[
                *save_args(self._keys, integration, connection_id, now, next_check_at,
                           fields, subject),
                # Outside an exchange: no account check, no events, no mark.
                "", "[]", "", "{}", "[]", "{}", self._events_max_length, 0, "",
            ],
        )  # fmt: skip
        return int(reply[1])

    async def update(
        self, connection: Connection, *, now: float, operation: str = "", **change: Unpack[Change]
    ) -> int | None:
        """`write`, returning the new version only (None when someone got there first)."""
        return (await self.write(connection, now=now, operation=operation, **change)).version

    async def write(
        self, connection: Connection, *, now: float, operation: str = "", **change: Unpack[Change]
    ) -> Written:
        """Compare-and-set against `connection.version`; no version when someone got there
        first.

        Every write bumps the version, so of two writers that read the same version only
        one succeeds. A new token set replaces every token field. In the same step, when
        the write lands, `event` is published; and `lease` is given back either way.
        A retry of a write whose reply was lost passes the same `operation` id: finding
        its own write in place, it returns that version instead of None. `backoff` puts
        the connection in (or takes it out of) its provider's set of retries waiting.
        """
        tokens, event, lease = change.get("tokens"), change.get("event"), change.get("lease")
        schedule_at, unschedule = change.get("schedule_at"), change.get("unschedule", False)
        backoff = change.get("backoff", Backoff.LEAVE)
        set_fields, delete_fields = change.get("set_fields"), change.get("delete_fields", ())
        if schedule_at is not None and unschedule:
            raise ValueError("schedule_at and unschedule are exclusive")
        if unschedule:
            backoff = Backoff.REMOVE  # off the schedule: no retry waits to be pulled forward
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
        # Claims bound their leases by when the token lapses (claim_due.lua).
        deadline = ""
        if unschedule or (tokens is not None and tokens.expires_at is None):
            deadline = "-"
        elif tokens is not None and tokens.expires_at is not None:
            deadline = repr(tokens.expires_at)
        integration, connection_id = connection.integration, connection.connection_id
        shard = self._keys.shard(integration, connection_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._update(
                keys=[
                    self._keys.connection(integration, connection_id),
                    self._keys.schedule(shard),
                    self._keys.lock(integration, connection_id),
                    self._keys.events(shard),
                    self._keys.backoff(connection.provider, shard),
                    self._keys.token_deadlines(shard),
                    *self._keys.status_count_keys(shard),
                ],
                args=[
                    str(connection.version),
                    repr(now),
                    self._keys.member(integration, connection_id),
                    "-" if unschedule else ("" if schedule_at is None else repr(schedule_at)),
                    json.dumps(fields),
                    json.dumps(sorted(deletions - set(fields))),
                    lease.lock_token if lease else "",
                    event.type if event else "",
                    json.dumps(event.data, separators=(",", ":")) if event else "",
                    self._events_max_length,
                    alert_change(connection, event),
                    operation,
                    backoff.value,
                    deadline,
                    integration,
                ],
                client=pipe,
            )
            if lease is not None and lease.slot_token:
                # The slot the lease holds, named as the lease names it (the stored provider
                # may differ from the configured one the claim used).
                pipe.zrem(self._keys.provider_slots(lease.provider), lease.slot_token)
            result = (await scripts.execute(pipe))[0]
        if lease is not None:
            lease.released = True
        version, waiting = int(result[0]), int(result[1])
        return Written(None if version < 0 else version, waiting)

    async def get(self, integration: str, connection_id: str) -> Connection:
        """The connection as readers (API, CLI, library) see it: a stored `active` whose
        token has lapsed reads as degraded, "refresh_overdue" (core.policy)."""
        raw = await self._hash(integration, connection_id)
        return parse_connection(raw).effective(self._clock())

    async def load(self, integration: str, connection_id: str) -> tuple[Connection, TokenSet]:
        """Metadata as stored and the decrypted token set, read in one round trip (the
        refresh path writes from the stored status, not the effective one)."""
        raw = await self._hash(integration, connection_id)
        connection = parse_connection(raw)
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

    async def delete(self, integration: str, connection_id: str, provider: str = "") -> bool:
        """The hash, its schedule entries, the index entry and its count, in one step."""
        member, shard = (
            self._keys.member(integration, connection_id),
            self._keys.shard(integration, connection_id),
        )
        deleted = await self._delete(
            keys=[self._keys.connection(integration, connection_id), self._keys.schedule(shard),
                  self._keys.connections(integration, shard), self._keys.token_deadlines(shard),
                  *self._keys.status_count_keys(shard),
                  *([self._keys.backoff(provider, shard)] if provider else [])],
            args=[member, connection_id, integration],
        )  # fmt: skip
        return bool(deleted)

    async def _hash(self, integration: str, connection_id: str) -> dict[str, str]:
        raw = cast(
            dict[str, str],
            await self._redis.hgetall(self._keys.connection(integration, connection_id)),
        )
        if not raw:
            raise UnknownConnectionError(f"no connection {connection_id!r} in {integration!r}")
        return raw
