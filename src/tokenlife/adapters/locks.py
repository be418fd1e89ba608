"""A per-connection lock and per-provider concurrency slots, both in Redis, and the claim
that takes both (with the connection's fields) for a refresh in one round trip: two scripts
in one pipeline, since the lock lives in its connection's shard and the slots are one key
for the fleet (on a Cluster, two nodes answer at once).

The lock is an efficiency measure, not a guarantee: the save after a refresh is a
compare-and-set on the version, so a worker whose lock expired can't overwrite newer
tokens. Slots are shared by every worker process, so an outage of one provider ties up
at most its own slots, not the workers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tokenlife.adapters import scripts
from tokenlife.adapters.connection_record import Connection, parse_connection
from tokenlife.adapters.keys import (
    BREAKER_OPEN_TTL_SECONDS,
    MIN_LEASE_SECONDS,
    PROVIDER_SLOT_TTL_SECONDS,
    REFRESH_LOCK_TTL_SECONDS,
    Keys,
)
from tokenlife.adapters.provider_breakers import Hold
from tokenlife.core.integration import Integration
from tokenlife.errors import CorruptRecordError, UnknownConnectionError

log = logging.getLogger(__name__)


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


class ClaimKind(StrEnum):
    OK = "ok"
    LOCKED = "locked"  # someone else holds the connection's lock
    GONE = "gone"  # no such connection
    THROTTLED = "throttled"  # every slot of the provider is taken
    CORRUPT = "corrupt"  # the record is half-written or unreadable; nothing is held
    HELD = "held"  # the provider host's breaker is open: not now (nothing is held)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of taking a connection for a refresh in one round trip."""

    kind: ClaimKind
    connection: Connection | None = None
    lease: Lease | None = None
    refresh_ciphertext: str | None = None
    # The refresh goes ahead as its host's breaker's probe (HELD: what was read, and a lease
    # of the lock when its token lapsed, for the status write; released otherwise).
    probe: bool = False


class Locks:
    def __init__(
        self, redis: Redis, keys: Keys, *, lock_min_seconds: float = MIN_LEASE_SECONDS
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._release = scripts.register(redis, "release_lock")
        self._claim = scripts.register(redis, "claim_connection")
        self._take_slot = scripts.register(redis, "take_slot")
        # A claim's lock never lives shorter than this (longer than one token request).
        self._lock_min_ms = int(min(lock_min_seconds, REFRESH_LOCK_TTL_SECONDS) * 1000)

    async def claim_for_caller(
        self, integration: Integration, connection_id: str, slots: int
    ) -> Claim | None:
        """One claim for a caller asking now (a token on demand, `connections refresh`):
        the claim when taken; None while a refresh holds the lock or the provider has all
        its slots taken (look again); UnknownConnectionError or CorruptRecordError when
        there is no readable connection to refresh."""
        name = integration.name
        claim = await self.claim(
            name, connection_id, integration.provider, slots,
            integration.preset.facts.refresh_token_reuse_grace_seconds,
        )  # fmt: skip
        if claim.kind is ClaimKind.GONE:
            raise UnknownConnectionError(f"no connection {connection_id!r} in {name!r}")
        if claim.kind is ClaimKind.CORRUPT:
            raise CorruptRecordError(
                "the stored record of this connection is unreadable; delete it and connect again"
            )
        return claim if claim.kind is ClaimKind.OK else None

    async def claim(
        self,
        integration: str,
        connection_id: str,
        provider: str,
        slots: int,
        reuse_grace_seconds: int | None = None,
        hold: Hold | None = None,
    ) -> Claim:
        """Lock the connection, read it and, when it has a refresh token, take one of the
        provider's slots: one round trip instead of three on the hot path. The lock (and,
        for a refresh, the schedule entry) lasts half the time the token has left and half
        the provider's reuse grace, at least one request (claim_connection.lua); times
        are Redis's. A scheduled claim passes `hold`: an open breaker of the provider's
        host holds it back, or lets it go ahead as the probe."""
        lease = Lease.new(integration, connection_id, provider)
        grace = "" if reuse_grace_seconds is None else str(reuse_grace_seconds)
        shard = self._keys.shard(integration, connection_id)
        keys = [
            self._keys.lock(integration, connection_id),
            self._keys.connection(integration, connection_id),
            self._keys.schedule(shard),
        ]
        if hold is not None:
            keys += [
                self._keys.breaker_gate(hold.scope, shard),
                self._keys.breaker_held(hold.scope, shard),
            ]
        slots_key = self._keys.provider_slots(provider)
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._claim(
                keys=keys,
                args=[
                    lease.lock_token,
                    REFRESH_LOCK_TTL_SECONDS * 1000,
                    self._lock_min_ms,
                    self._keys.member(integration, connection_id),
                    grace,
                    repr(hold.now) if hold else "",
                    repr(hold.probe_seconds) if hold else "",
                    repr(hold.pause_seconds) if hold else "",
                    BREAKER_OPEN_TTL_SECONDS,
                ],
                client=pipe,
            )
            await self._take_slot(
                keys=[slots_key],
                args=[lease.slot_token or "", slots, PROVIDER_SLOT_TTL_SECONDS],
                client=pipe,
            )
            try:
                # Each half's outcome, an error included: on a Cluster they are two nodes,
                # and what one half took must go back when the other failed.
                reply, took = await scripts.execute(pipe, raise_on_error=False)
            except BaseException:
                await _shielded(self._undo(lease, slots_key, lock=True, slot=True))
                raise
        if isinstance(reply, BaseException) or isinstance(took, BaseException):
            # Give back by token whatever a half may hold: only a server's refusal
            # (ResponseError) says it took nothing; a lost connection may have taken it.
            await _shielded(self._undo(lease, slots_key, lock=not isinstance(reply, ResponseError),
                                       slot=took != 0))  # fmt: skip
            raise reply if isinstance(reply, BaseException) else cast(BaseException, took)
        try:
            return await self._settle(lease, reply, took == 1, slots_key)
        except BaseException:
            # Cancelled (an on-demand wait bound) or Redis failing between the claim and
            # what it hands over: nothing is left held.
            await _shielded(self._undo(lease, slots_key, lock=True, slot=True))
            raise

    async def _settle(self, lease: Lease, reply: Any, took: bool, slots_key: str) -> Claim:
        """What the claim's reply and the slot's make of the lease (claim's docstring)."""
        integration, connection_id, provider = (
            lease.integration,
            lease.connection_id,
            lease.provider,
        )
        kind = ClaimKind(reply[0])
        needs_slot = kind is ClaimKind.OK and reply[2] == "slot"
        if took and not needs_slot:
            await self._redis.zrem(slots_key, lease.slot_token or "")
        if kind not in (ClaimKind.OK, ClaimKind.HELD):
            return Claim(kind)
        flat = reply[1]
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        if kind is ClaimKind.HELD:
            # Its token lapsed: the lock is kept for the caller's status write.
            kept = Lease(integration, connection_id, provider, lease.lock_token, None)
            if reply[2] != "locked":
                kept.released = True
            try:
                return Claim(kind, parse_connection(raw), kept)
            except CorruptRecordError:
                await self.give_back(kept)
                return Claim(ClaimKind.CORRUPT)
        if needs_slot and not took:
            # Back where it was: the claim moved it closer for a refresh that isn't going
            # ahead (GT: a later time someone set meanwhile stays).
            if reply[5] != "":
                member = self._keys.member(integration, connection_id)
                await self._redis.zadd(self._keys.schedule_of(integration, connection_id),
                                       {member: float(reply[5])}, xx=True, gt=True)  # fmt: skip
            await self.release(integration, connection_id, lease.lock_token)
            return Claim(ClaimKind.THROTTLED)
        if not needs_slot:
            lease = Lease(integration, connection_id, provider, lease.lock_token, None)
        elif int(reply[4]) < PROVIDER_SLOT_TTL_SECONDS * 1000:
            # The slot lives no longer than the lock: a claim whose caller went away (an
            # on-demand wait bound firing, a worker killed) holds neither for long.
            await self._take_slot(
                keys=[slots_key], args=[lease.slot_token or "", "", int(reply[4]) / 1000]
            )
        try:
            connection = parse_connection(raw)
        except CorruptRecordError:
            # Held until their TTL, the lock and the slot would make every lease of this
            # record come back and hold one of the provider's slots each time.
            await self.give_back(lease)
            return Claim(ClaimKind.CORRUPT)
        return Claim(
            ClaimKind.OK, connection, lease, raw.get("refresh_token"), probe=reply[3] == "probe"
        )

    async def _undo(self, lease: Lease, slots_key: str, *, lock: bool, slot: bool) -> None:
        """Give back what a claim that failed half-way may hold, each by its token (a
        no-op where it holds nothing)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if lock:
                key = self._keys.lock(lease.integration, lease.connection_id)
                await self._release(keys=[key], args=[lease.lock_token], client=pipe)
            if slot and lease.slot_token:
                pipe.zrem(slots_key, lease.slot_token)
            await scripts.execute(pipe)

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
            await scripts.execute(pipe)
        lease.released = True


async def _shielded(undo: Coroutine[Any, Any, None]) -> None:
    """Run an undo to its end even when the caller is being cancelled; best effort."""
    try:
        await asyncio.shield(undo)
    except Exception:
        log.warning("could not give back a claim's lock or slot; they expire by themselves",
                    exc_info=True)  # fmt: skip
