"""The provider hosts' circuit breakers in Redis: a batch's outcomes counted and the breaker
moved in one script, the held refreshes released when a host answers again, and what the
alert counts as at risk. The rules are in core/provider_breaker.py.

The breaker itself is one hash for the fleet. Claims can't read it in their script (it is in
a slot of its own, a connection in its shard's), so an open breaker is copied into a gate per
shard, which the shard's claims consult inside claim_connection.lua (adapters/locks.py) in
the round trip they make anyway. The worker whose batch opened the breaker writes the gates,
and every batch counted while it stays open writes any gate missing (a worker that died
between the two); the worker whose probe closed it deletes them, and so does a probe answered
while the breaker is already closed. Each shard paces its own probes, its first one a
fraction of an interval after the last shard's: one probe per interval per shard at most.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import BREAKER_OPEN_TTL_SECONDS, Keys
from tokenlife.core.provider_breaker import AT_RISK_HORIZONS, BreakerPolicy

# The alert's count of connections at risk reads at most this many token deadlines: a
# one-off read when a breaker opens, bounded at a fleet of millions ("at least" beyond it).
AT_RISK_READ_LIMIT = 100_000
_AT_RISK_PAGE = 5000
# Held refreshes released per round trip.
_RELEASE_PAGE = 1000


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """What counting a batch did to a breaker."""

    state: str  # closed | open | opened | recovered
    failures: float = 0.0  # opened: the window's estimated failures and answers
    answered: float = 0.0
    kinds: Mapping[str, int] = field(default_factory=dict)
    opened_at: float | None = None  # recovered: since when it was open
    probes_failed: int = 0


@dataclass(frozen=True, slots=True)
class Hold:
    """What a scheduled claim passes so an open breaker can hold it (claim_connection.lua)."""

    scope: str
    now: float
    probe_seconds: float
    pause_seconds: float


class ProviderBreakers:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._record = scripts.register(redis, "breaker_record")
        self._release = scripts.register(redis, "breaker_release")

    async def record(
        self,
        scope: str,
        now: float,
        policy: BreakerPolicy,
        *,
        answered: int,
        probe_answered: int,
        failures: Mapping[str, int],
        probe_failures: int = 0,
    ) -> BreakerChange:
        args: list[str | int | float] = [
            repr(now), repr(policy.window_seconds), policy.min_failures,
            repr(policy.failure_rate), answered, probe_answered, scope,
            repr(policy.probe_seconds), int(2 * policy.window_seconds) + 1,
            BREAKER_OPEN_TTL_SECONDS, probe_failures,
        ]  # fmt: skip
        for kind, count in failures.items():
            args += [kind, count]
        reply = await self._record(
            keys=[self._keys.breaker(scope), self._keys.breakers_open], args=args
        )
        state = _text(reply[0])
        if state in ("opened", "open"):
            await self._open_gates(scope, now, policy.probe_seconds, fresh=state == "opened")
        if state == "opened":
            flat = [_text(v) for v in reply[3:]]
            kinds = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
            return BreakerChange(state, float(reply[1]), float(reply[2]), kinds)
        if state == "recovered":
            opened_at = _text(reply[1])
            return BreakerChange(
                state, opened_at=float(opened_at) if opened_at else None,
                probes_failed=int(reply[2]),
            )  # fmt: skip
        return BreakerChange(state)

    async def _open_gates(
        self, scope: str, now: float, probe_seconds: float, *, fresh: bool
    ) -> None:
        """Every shard's gate open: a fresh one with its first probe time (staggered over one
        interval); else only those missing get one."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                gate = self._keys.breaker_gate(scope, shard)
                first = now + probe_seconds * (1 + shard / self._keys.shards)
                if fresh:
                    pipe.delete(gate)
                pipe.hsetnx(gate, "state", "open")
                pipe.hsetnx(gate, "probe_at", f"{first:.6f}")
                pipe.expire(gate, BREAKER_OPEN_TTL_SECONDS)
            await pipe.execute()

    async def close(
        self, scope: str, now: float, rate: float, opened_at: float | None = None
    ) -> int:
        """The host answers: every shard's gate goes, and what they held comes back
        (`release_held`); how many came back."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.delete(self._keys.breaker_gate(scope, shard))
            await pipe.execute()
        return await self.release_held(scope, now, rate, opened_at)

    async def release_held(
        self, scope: str, now: float, rate: float, opened_at: float | None = None
    ) -> int:
        """Every refresh the host's breaker held (since `opened_at`, when it opened) comes
        due again, soonest-lapsing first, `rate` per second from now (breaker_release.lua):
        the shards take turns a page at a time, so the ramp is the fleet's; how many left
        the held sets."""
        released = 0
        shards = list(self._keys.all_shards)
        while shards:
            for shard in list(shards):
                held = self._keys.breaker_held(scope, shard)
                members = cast(list[str], await self._redis.zrange(held, 0, _RELEASE_PAGE - 1))
                if not members:
                    shards.remove(shard)
                    continue
                keys = [held, self._keys.schedule(shard)]
                keys += [self._keys.connection(*self._keys.parse_member(m)) for m in members]
                start = now + released / rate
                args = [repr(start), repr(1 / rate), "" if opened_at is None else repr(opened_at)]
                args += members
                await self._release(keys=keys, args=args)
                released += len(members)
        return released

    async def deadlines(
        self, integrations: Iterable[str], now: float
    ) -> tuple[dict[str, list[tuple[str, float]]], bool]:
        """The scheduled connections of `integrations` whose access token lapsed or lapses
        within the longest at-risk horizon: {integration: [(connection id, lapses at)]},
        and whether the read stopped at AT_RISK_READ_LIMIT."""
        wanted = set(integrations)
        found: dict[str, list[tuple[str, float]]] = {name: [] for name in wanted}
        until = repr(now + max(AT_RISK_HORIZONS))
        read = 0
        for shard in self._keys.all_shards:
            start = 0
            while True:
                if read >= AT_RISK_READ_LIMIT:
                    return found, True
                page = await self._redis.zrangebyscore(
                    self._keys.token_deadlines(shard), "-inf", until, start=start,
                    num=_AT_RISK_PAGE, withscores=True,
                )  # fmt: skip
                for member, score in cast(list[tuple[str, float]], page):
                    integration, connection_id = self._keys.parse_member(_text(member))
                    if integration in wanted:
                        found[integration].append((connection_id, float(score)))
                read += len(page)
                start += len(page)
                if len(page) < _AT_RISK_PAGE:
                    break
        return found, False

    async def held_count(self, scope: str) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.zcard(self._keys.breaker_held(scope, shard))
            return sum(int(n) for n in await pipe.execute())

    async def open_scopes(self) -> list[str]:
        """The hosts whose breaker is open; one whose breaker expired open (no outcome
        counted for BREAKER_OPEN_TTL_SECONDS) leaves the set here."""
        hosts = sorted(_text(m) for m in await self._redis.smembers(self._keys.breakers_open))
        if not hosts:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.exists(self._keys.breaker(host))
            alive = await pipe.execute()
        gone = [host for host, exists in zip(hosts, alive, strict=True) if not exists]
        if gone:
            await self._redis.srem(self._keys.breakers_open, *gone)
        return [host for host in hosts if host not in gone]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
