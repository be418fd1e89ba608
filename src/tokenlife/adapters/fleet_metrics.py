"""The fleet's figures, read from Redis at scrape time: Redis is where workers, beat and
the API meet, so one scrape of any API process shows the whole fleet.

Workers only add to running totals in the `{prefix}:counters` hash (one pipelined round
trip per batch); this module names the latency fields they add to and reads everything
back. The field families of that hash:

    refresh:{provider}:{outcome}      refreshes by outcome (services/engine.py)
    refresh:claimed                   connections beat claimed (refresh_schedule.tick)
    latency:{provider}:le:{bound}     refreshes that took at most `bound` seconds and more
                                      than the bound below it (not cumulative)
    latency:{provider}:count          refreshes timed
    latency:{provider}:sum_us         their total duration in whole microseconds (HINCRBY
                                      takes integers, and a float sum would drift anyway)
    alerts:{result}                   delivery results: sent, suppressed, dead_lettered, ...
    alerts:raised:{type}              alert events by type, counted by delivery as it reads
                                      the stream (services/delivery.py)
    exchange:..., on_demand:...,      code exchanges and on-demand refreshes
    on_demand_latency:...             (adapters/outcome_counters.py)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.outcome_counters import (
    ON_DEMAND_OUTCOMES,
    exchange_series,
    parse_outcome_counters,
)
from tokenlife.adapters.provider_breakers import ProviderBreakers
from tokenlife.adapters.status_counts import StatusCounts
from tokenlife.core.notifications import SEVERITY

# Upper bounds in seconds. A refresh is one token request plus a compare-and-set: tens of
# milliseconds to a few seconds; the HTTP timeout caps it (300 s at most). Changing these
# orphans the fields of the old bounds, so the histogram starts again from zero.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# Delivery results exported, always, so a rate() over them has a series from the start.
DELIVERY_RESULTS = ("sent", "suppressed", "dead_lettered")
# Members whose status is read per round trip: bounded, so a large fleet never holds
# Redis for long nor builds one huge reply.


def latency_fields(provider: str, seconds: float) -> Counter[str]:
    """What one refresh of `seconds` adds to the counters hash. Pure."""
    bound = next((b for b in LATENCY_BUCKETS if seconds <= b), None)
    fields: Counter[str] = Counter({
        f"latency:{provider}:count": 1,
        f"latency:{provider}:sum_us": max(0, round(seconds * 1_000_000)),
    })  # fmt: skip
    if bound is not None:  # beyond the last bound: only in count (the +Inf bucket)
        fields[f"latency:{provider}:le:{bound!r}"] = 1
    return fields


@dataclass(frozen=True, slots=True)
class Latency:
    """One provider's histogram: cumulative counts per bound, as Prometheus wants them."""

    cumulative: tuple[tuple[float, int], ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True, slots=True)
class FleetFigures:
    refreshes: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (provider, outcome)
    latency: Mapping[str, Latency] = field(default_factory=dict)  # by provider
    schedule_depth: int = 0
    schedule_lag_seconds: float = 0.0
    alerts: Mapping[str, int] = field(default_factory=dict)  # by alert type
    deliveries: Mapping[str, int] = field(default_factory=dict)  # by result
    connections: Mapping[str, int] = field(default_factory=dict)  # by status
    # Code exchanges by (provider, outcome, reason); on-demand refreshes by (provider,
    # outcome) and their duration by provider (adapters/outcome_counters.py).
    exchanges: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    on_demand: Mapping[tuple[str, str], int] = field(default_factory=dict)
    on_demand_latency: Mapping[str, Latency] = field(default_factory=dict)
    # Provider hosts whose circuit breaker is open (core/provider_breaker.py).
    degraded_hosts: tuple[str, ...] = ()


class FleetMetrics:
    """Reads the figures; the integrations named are those whose connections are counted,
    and the `providers` those whose exchange and on-demand series show from the start."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        integrations: Iterable[str],
        providers: Iterable[str] = (),
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._integrations = tuple(integrations)
        self._providers = tuple(sorted(set(providers)))
        self._breakers = ProviderBreakers(redis, keys)
        self._counts = StatusCounts(redis, keys)

    async def read(self, now: float) -> FleetFigures:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.counters)
            for shard in self._keys.all_shards:
                pipe.zcard(self._keys.schedule(shard))
                pipe.zrange(self._keys.schedule(shard), 0, 0, withscores=True)
            counters, *shards = await pipe.execute()
        depth = sum(int(n) for n in shards[::2])
        heads = cast(list[list[tuple[str, float]]], shards[1::2])
        first = min((h for h in heads if h), key=lambda h: float(h[0][1]), default=[])
        refreshes, latency, alerts, deliveries = parse_counters(cast(dict[str, str], counters))
        # Claimed members are leased (scored at the lease's end), so the lowest score is the
        # longest-waiting connection nobody has taken yet.
        lag = max(0.0, now - float(first[0][1])) if first else 0.0
        exchanges, on_demand, on_demand_latency = parse_outcome_counters(
            cast(dict[str, str], counters)
        )
        # Every known series from the first scrape (a rate() needs one), then what was counted.
        exchanges = {**exchange_series(self._providers), **exchanges}
        on_demand = {**{(p, o): 0 for p in self._providers for o in ON_DEMAND_OUTCOMES},
                     **on_demand}  # fmt: skip
        return FleetFigures(
            exchanges=exchanges,
            on_demand=on_demand,
            on_demand_latency={p: _histogram(f) for p, f in on_demand_latency.items()},
            refreshes=refreshes,
            latency=latency,
            schedule_depth=int(depth),
            schedule_lag_seconds=lag,
            alerts=alerts,
            deliveries=deliveries,
            connections=await self.connections_by_status(now),
            degraded_hosts=tuple(await self._breakers.open_scopes()),
        )

    async def connections_by_status(self, now: float) -> dict[str, int]:
        """By stored status, for the configured integrations: kept as statuses change
        (adapters/status_counts.py), O(1) per scrape."""
        return await self._counts.read(self._integrations, now)


def parse_counters(
    counters: Mapping[str, str],
) -> tuple[dict[tuple[str, str], int], dict[str, Latency], dict[str, int], dict[str, int]]:
    """Sort the counters hash into refreshes, latency, alerts by type, deliveries. Pure."""
    refreshes: dict[tuple[str, str], int] = {}
    raw_latency: dict[str, dict[str, int]] = {}
    alerts = dict.fromkeys(SEVERITY, 0)  # every type from the start, as for deliveries
    deliveries = dict.fromkeys(DELIVERY_RESULTS, 0)
    for name, value in counters.items():
        family, _, rest = name.partition(":")
        if family == "refresh":
            provider, _, outcome = rest.rpartition(":")
            if provider:  # "refresh:claimed" names no provider
                refreshes[(provider, outcome)] = int(value)
        elif family == "latency":
            provider, _, part = rest.partition(":")
            raw_latency.setdefault(provider, {})[part] = int(value)
        elif family == "alerts" and rest.startswith("raised:"):
            alerts[rest.removeprefix("raised:")] = int(value)
        elif family == "alerts" and rest in deliveries:
            deliveries[rest] = int(value)
    latency = {provider: _histogram(fields) for provider, fields in raw_latency.items()}
    return refreshes, latency, alerts, deliveries


def _histogram(fields: Mapping[str, int]) -> Latency:
    running, cumulative = 0, []
    for bound in LATENCY_BUCKETS:
        running += fields.get(f"le:{bound!r}", 0)
        cumulative.append((bound, running))
    # A scrape may land between a batch's increments (the pipeline is not a transaction):
    # never let the +Inf bucket fall below the finite ones.
    count = max(fields.get("count", 0), running)
    return Latency(tuple(cumulative), count, fields.get("sum_us", 0) / 1_000_000)
