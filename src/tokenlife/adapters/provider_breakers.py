"""The provider hosts' circuit breakers in Redis: a batch's outcomes counted and the breaker
moved in one script, the held refreshes released when a host answers again, and what the
alert counts as at risk. The rules are in core/provider_breaker.py; claims consult the
breaker inside claim_connection.lua (adapters/locks.py), in the round trip they make anyway.
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

    async def release_held(
        self, scope: str, now: float, rate: float, opened_at: float | None = None
    ) -> int:
        """Every refresh the host's breaker held (since `opened_at`, when it opened) comes
        due again, soonest-lapsing first, `rate` per second from now (breaker_release.lua);
        how many left the held set."""
        held, released = self._keys.breaker_held(scope), 0
        while members := cast(list[str], await self._redis.zrange(held, 0, _RELEASE_PAGE - 1)):
            keys = [held, self._keys.schedule]
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
        while read < AT_RISK_READ_LIMIT:
            page = await self._redis.zrangebyscore(
                self._keys.token_deadlines, "-inf", until, start=read, num=_AT_RISK_PAGE,
                withscores=True,
            )  # fmt: skip
            for member, score in cast(list[tuple[str, float]], page):
                integration, connection_id = self._keys.parse_member(_text(member))
                if integration in wanted:
                    found[integration].append((connection_id, float(score)))
            read += len(page)
            if len(page) < _AT_RISK_PAGE:
                return found, False
        return found, True

    async def held_count(self, scope: str) -> int:
        return int(await self._redis.zcard(self._keys.breaker_held(scope)))

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
