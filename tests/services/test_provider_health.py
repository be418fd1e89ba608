"""A provider host's circuit breaker, in process: RefreshEngine.refresh_batch over the real
Redis and the session's generic fake over HTTP. Each test drives the breaker's clock itself
(the `clock` of refresh_batch), so nothing waits on the wall clock: failures open it once,
scheduled refreshes are held while it is open (asked ones are not), a failed probe raises
no alert of its own, and an answered probe releases the held refreshes on a ramp.

A shard's claims see the breaker through a gate of their own, each shard probing on its own
(first at PROBE * (1 + shard / shards), adapters/provider_breakers.py): the fleet of the
first tests lives in shard 0, whose first probe is PROBE after the breaker opened; the last
test spreads one over two shards."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import pytest

from tests.fakes.base import Reply
from tests.support import Fakes, save_minted, stream_events
from tokenlife.adapters.keys import DEFAULT_SHARDS, Keys, shard_of
from tokenlife.adapters.refresh_schedule import Due
from tokenlife.core import events
from tokenlife.core.policy import Status
from tokenlife.core.provider_breaker import breaker_scope
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings

INTEGRATION = "generic"
PROBE, PAUSE, RATE = 30.0, 600.0, 10.0
BREAKER = {"breaker_min_failures": 5, "breaker_window_seconds": 60.0,
           "breaker_probe_seconds": PROBE, "breaker_pause_seconds": PAUSE,
           "breaker_recovery_rate": RATE, "provider_concurrency": 50}  # fmt: skip
SHARDS = DEFAULT_SHARDS


def in_shard(name: str, shard: int = 0) -> str:
    """A connection id starting with `name` that lies in `shard`."""
    n = 0
    while shard_of(Keys.member(INTEGRATION, f"{name}.{n}"), SHARDS) != shard:
        n += 1
    return f"{name}.{n}"


# When each connection's access token lapses, in seconds after the first batch.
LAPSED = tuple(in_shard(f"lapsed-{n}") for n in range(3))
SOON = in_shard("soon")  # lapses before the second batch
PROBED = in_shard("probed")  # lapses before the first probe
LATER = tuple(in_shard(f"later-{n}") for n in range(5))  # within the hour
LAPSES = {**dict.fromkeys(LAPSED, -600.0), SOON: 5.0, PROBED: 20.0, **dict.fromkeys(LATER, 2400.0)}
DOWN = Reply(status=503, body=b"<html>503 Service Unavailable</html>", content_type="text/html")


@dataclass
class Fleet:
    runtime: Runtime
    fakes: Fakes
    t0: float
    families: dict[str, str]  # connection id -> the fake's token family

    @property
    def scope(self) -> str:
        return urlsplit(self.fakes.generic.base_url).netloc

    async def batch(self, cids: tuple[str, ...], at: float, *, asked: bool = False) -> Counter[str]:
        """Refresh `cids` at `at` seconds after t0, due as the schedule says (claim_due)."""
        schedule = await self.schedule()
        due = [Due(INTEGRATION, cid, self.t0 + schedule[cid]) for cid in cids]
        return await self.runtime.engine.refresh_batch(due, lambda: self.t0 + at, asked=asked)

    def requests(self, cid: str) -> int:
        """Refresh requests the fake got for the connection's family, answered or not."""
        fake = self.fakes.generic
        with fake.lock:
            sent = [r.get("refresh_token", "") for r in fake.token_requests]
            return sum(fake.refresh_tokens.get(token) == self.families[cid] for token in sent)

    async def events(self, kind: str) -> list[dict[str, Any]]:
        found = await stream_events(self.runtime.redis, self.runtime.keys.prefix)
        return [data for t, data in found if t == kind]

    async def schedule(self) -> dict[str, float]:
        """Seconds after t0 each connection is scheduled at (every shard)."""
        redis, keys = self.runtime.redis, self.runtime.keys
        found: dict[str, float] = {}
        for shard in keys.all_shards:
            pairs = cast(
                list[tuple[str, float]],
                await redis.zrange(keys.schedule(shard), 0, -1, withscores=True),
            )
            found |= {m.partition(":")[2]: float(s) - self.t0 for m, s in pairs}
        return found

    async def held(self) -> set[str]:
        """What the breaker holds, in every shard."""
        found: set[str] = set()
        for shard in self.runtime.keys.all_shards:
            held = self.runtime.keys.breaker_held(self.scope, shard)
            members = cast(list[str], await self.runtime.redis.zrange(held, 0, -1))
            found |= {m.partition(":")[2] for m in members}
        return found

    async def gates(self) -> dict[int, float]:
        """Each shard's open gate: its next probe time, in seconds after t0."""
        found: dict[int, float] = {}
        for shard in self.runtime.keys.all_shards:
            gate = self.runtime.keys.breaker_gate(self.scope, shard)
            fields = cast(dict[str, str], await self.runtime.redis.hgetall(gate))
            if fields:
                assert fields["state"] == "open", fields
                found[shard] = float(fields["probe_at"]) - self.t0
        return found

    async def status(self, cid: str) -> tuple[Status, str | None]:
        connection = await self.runtime.tokens.get(INTEGRATION, cid)
        return connection.status, connection.status_reason


@asynccontextmanager
async def fleet_of(
    settings: Settings, fakes: Fakes, lapsing: dict[str, float] = LAPSES, /, **changes: Any
) -> AsyncIterator[Fleet]:
    """A Runtime under a key prefix of its own, with `lapsing`'s connections due at t0 and
    the fake answering 503 to each of their refreshes."""
    own = settings.model_copy(update={
        "key_prefix": f"health-{uuid.uuid4().hex[:8]}", "redis_shards": SHARDS, **changes,
    })  # fmt: skip
    runtime = await Runtime.open(await load_config(own))
    t0 = float(int(time.time()))
    families: dict[str, str] = {}
    try:
        for cid, lapses in lapsing.items():
            families[cid] = await save_minted(
                runtime, fakes.generic, INTEGRATION, cid, client_id="generic-client",
                scopes=("openid", "profile"), lifetime=3600,
                issued_at=t0 + lapses - 3600,  # so the token lapses at t0 + lapses
                due_at=t0,
            )  # fmt: skip
            fakes.generic.script_refresh(families[cid], DOWN)
        yield Fleet(runtime, fakes, t0, families)
    finally:
        await runtime.close()


@pytest.fixture
async def fleet(settings: Settings, fakes: Fakes) -> AsyncIterator[Fleet]:
    async with fleet_of(settings, fakes, **BREAKER) as opened:
        yield opened


async def open_breaker(fleet: Fleet) -> None:
    """Every connection's refresh fails at t0: the breaker opens in that batch."""
    assert await fleet.batch(tuple(LAPSES), 0) == {"transient_failure": len(LAPSES)}
    assert await fleet.runtime.breakers.open_scopes() == [fleet.scope]


async def test_a_burst_of_failures_opens_it_once_with_one_alert_per_integration(
    fleet: Fleet,
) -> None:
    await open_breaker(fleet)

    degraded = await fleet.events(events.PROVIDER_DEGRADED)
    on_host = {name for name, i in fleet.runtime.config.integrations.items()
               if breaker_scope(i.token_url) == fleet.scope}  # fmt: skip
    assert INTEGRATION in on_host
    assert Counter(d["integration"] for d in degraded) == dict.fromkeys(on_host, 1)
    [alert] = [d for d in degraded if d["integration"] == INTEGRATION]
    assert alert["host"] == fleet.scope
    assert alert["connection_id"] is None
    assert alert["failure_kinds"] == {"http_503": len(LAPSES)}
    assert (alert["failures"], alert["outcomes"]) == (len(LAPSES), len(LAPSES))
    risk = alert["connections_at_risk"]
    assert (risk["lapsed"], risk["within_1h"], risk["within_24h"]) == (3, 7, 7)
    assert risk["at_least"] is False
    soonest = [s["connection_id"] for s in risk["soonest"]]
    assert set(soonest[:3]) == set(LAPSED) and soonest[3:5] == [SOON, PROBED]
    # Only the connections already without an access token were told of one by one.
    failing = await fleet.events(events.REFRESH_FAILING)
    assert sorted(d["connection_id"] for d in failing) == sorted(LAPSED)
    # More failures while open open nothing again.
    assert await fleet.batch(LATER[:1], 1, asked=True) == {"transient_failure": 1}
    assert len(await fleet.events(events.PROVIDER_DEGRADED)) == len(on_host)


async def test_while_open_scheduled_refreshes_are_held_and_asked_ones_go_out(
    fleet: Fleet,
) -> None:
    await open_breaker(fleet)
    before = {cid: fleet.requests(cid) for cid in LAPSES}
    stream = await stream_events(fleet.runtime.redis, fleet.runtime.keys.prefix)

    assert await fleet.batch(tuple(LAPSES), 10) == {"held": len(LAPSES)}
    assert {cid: fleet.requests(cid) for cid in LAPSES} == before
    assert await fleet.held() == set(LAPSES)
    # Back after the pause (to twice it, jittered), or when the token lapses; one of them
    # is booked for the probe time, so probing goes on when nothing else comes due.
    schedule = await fleet.schedule()
    booked = [cid for cid, at in schedule.items() if at == pytest.approx(PROBE + 0.5)]
    assert len(booked) == 1, schedule
    for cid in set(LAPSES) - set(booked):
        back = LAPSES[PROBED] + 1 if cid == PROBED else None
        assert back == pytest.approx(schedule[cid]) or 10 + PAUSE <= schedule[cid] <= 10 + 2 * PAUSE
    # A token that lapsed while held says why; one already failing keeps its reason.
    assert await fleet.status(SOON) == (Status.DEGRADED, "provider_degraded")
    assert await fleet.status(LAPSED[0]) == (Status.DEGRADED, "refresh_failing")
    assert await fleet.status(LATER[0]) == (Status.ACTIVE, None)
    assert await stream_events(fleet.runtime.redis, fleet.runtime.keys.prefix) == stream

    # Someone asks for a refresh now: it goes out to the provider.
    assert await fleet.batch(LATER[:1], 12, asked=True) == {"transient_failure": 1}
    assert fleet.requests(LATER[0]) == before[LATER[0]] + 1


async def test_a_failed_probe_is_quiet_and_an_answered_one_releases_the_held_on_a_ramp(
    fleet: Fleet,
) -> None:
    await open_breaker(fleet)
    rest = tuple(cid for cid in LAPSES if cid != PROBED)
    probe, second = PROBE + 1, 2 * PROBE + 2  # each past its probe time
    # Past the probe time: one refresh goes ahead, and fails; the others are held.
    assert await fleet.batch((PROBED,), probe) == {"transient_failure": 1}
    assert fleet.requests(PROBED) == 2
    assert await fleet.batch(rest, probe) == {"held": len(rest)}
    assert [fleet.requests(cid) for cid in rest] == [1] * len(rest)
    # Its token lapsed: the alert about the provider says it, not one of its own.
    assert await fleet.status(PROBED) == (Status.DEGRADED, "provider_degraded")
    failing = await fleet.events(events.REFRESH_FAILING)
    assert PROBED not in {d["connection_id"] for d in failing}
    assert await fleet.held() == set(rest)

    # The provider answers again; the next probe gets new tokens.
    for family in fleet.families.values():
        fleet.fakes.generic.script_refresh(family, Reply())
    assert await fleet.batch(LATER[:1], second) == {"refreshed": 1}
    recovered = [d for d in await fleet.events(events.PROVIDER_RECOVERED)
                 if d["integration"] == INTEGRATION]  # fmt: skip
    assert len(recovered) == 1
    assert recovered[0]["host"] == fleet.scope
    assert recovered[0]["degraded_since"] == events.iso8601(fleet.t0)
    assert recovered[0]["probes_failed"] == 1
    assert recovered[0]["held_refreshes_resumed"] == len(rest) - 1
    assert await fleet.held() == set()
    assert await fleet.runtime.breakers.open_scopes() == []
    released = set(rest) - {LATER[0]}
    schedule = await fleet.schedule()
    ramp = second + len(released) / RATE
    # On the ramp; at most one earlier still: the one booked for the next probe (by the
    # failed probe, or by the first hold after it: which one of a batch holds first is the
    # batch's concurrency's to say), which the release leaves as soon as it is.
    assert all(schedule[cid] <= ramp for cid in released), schedule
    early = [cid for cid in released if schedule[cid] < second - 1e-6]
    assert len(early) <= 1 and all(schedule[c] == pytest.approx(2 * PROBE + 0.5, abs=1e-3)
                                   for c in early), schedule  # fmt: skip

    # They come due on the ramp and refresh, each once.
    others = tuple(cid for cid in LAPSES if cid != LATER[0])
    assert max(schedule[cid] for cid in others) <= ramp, schedule
    assert await fleet.batch(others, ramp + 1) == {"refreshed": len(others)}
    assert {cid: fleet.fakes.generic.refreshes(f) for cid, f in fleet.families.items()} == (
        dict.fromkeys(LAPSES, 1)
    )
    assert [await fleet.status(cid) for cid in LAPSES] == [(Status.ACTIVE, None)] * len(LAPSES)
    assert len(await fleet.events(events.PROVIDER_RECOVERED)) == len(
        await fleet.events(events.PROVIDER_DEGRADED)
    )


async def test_with_the_breaker_off_the_same_failures_hold_nothing(
    settings: Settings, fakes: Fakes
) -> None:
    off = {**BREAKER, "breaker_min_failures": 0}
    async with fleet_of(settings, fakes, **off) as fleet:
        for at in (0, 10, 31):
            assert await fleet.batch(tuple(LAPSES), at) == {"transient_failure": len(LAPSES)}
        assert [fleet.requests(cid) for cid in LAPSES] == [3] * len(LAPSES)
        assert await fleet.held() == set()
        assert await fleet.runtime.breakers.open_scopes() == []
        assert await fleet.events(events.PROVIDER_DEGRADED) == []
        assert await fleet.events(events.PROVIDER_RECOVERED) == []
        # Each token that lapsed (SOON by 10 s, PROBED by 31 s) is told of on its own.
        failing = await fleet.events(events.REFRESH_FAILING)
        assert sorted(d["connection_id"] for d in failing) == sorted((*LAPSED, SOON, PROBED))
        assert await fleet.status(PROBED) == (Status.DEGRADED, "refresh_failing")


async def test_each_shard_probes_on_its_own_and_one_answer_releases_every_shard(
    settings: Settings, fakes: Fakes
) -> None:
    """The breaker opens in every shard's gate, each shard's first probe staggered over one
    interval; a shard's probe leaves the others' held refreshes alone, and the host's answer
    to any probe closes every gate and releases what every shard held."""
    first, second = 0, SHARDS // 2
    spread = {in_shard(f"spread-{s}-{n}", s): -600.0 for s in (first, second) for n in range(3)}
    cids = tuple(spread)
    of_shard = {s: tuple(c for c in cids if shard_of(Keys.member(INTEGRATION, c), SHARDS) == s)
                for s in (first, second)}  # fmt: skip
    async with fleet_of(settings, fakes, spread, **BREAKER) as fleet:
        assert await fleet.batch(cids, 0) == {"transient_failure": len(cids)}
        assert await fleet.runtime.breakers.open_scopes() == [fleet.scope]
        staggered = {s: PROBE * (1 + s / SHARDS) for s in range(SHARDS)}
        assert await fleet.gates() == pytest.approx(staggered)

        # Past shard `first`'s probe time only: one of its refreshes probes, all else held.
        assert await fleet.batch(cids, PROBE + 1) == {"transient_failure": 1, "held": 5}
        assert sorted(fleet.requests(c) for c in of_shard[first]) == [1, 1, 2]
        assert [fleet.requests(c) for c in of_shard[second]] == [1, 1, 1]
        # Past shard `second`'s: its probe goes, shard `first`'s next one is not due yet.
        at = staggered[second] + 1
        assert at < 2 * PROBE
        assert await fleet.batch(cids, at) == {"transient_failure": 1, "held": 5}
        assert sorted(fleet.requests(c) for c in of_shard[first]) == [1, 1, 2]
        assert sorted(fleet.requests(c) for c in of_shard[second]) == [1, 1, 2]
        gates = await fleet.gates()
        assert gates[first] == pytest.approx(2 * PROBE)
        assert gates[second] == pytest.approx(staggered[second] + PROBE)
        held = await fleet.held()
        assert held & set(of_shard[first]) and held & set(of_shard[second]), held

        # Shard `first`'s next probe is answered: every shard's gate and held set go.
        for family in fleet.families.values():
            fleet.fakes.generic.script_refresh(family, Reply())
        prober = of_shard[first][0]
        answered = 2 * PROBE + 2
        assert await fleet.batch((prober,), answered) == {"refreshed": 1}
        [recovered] = [d for d in await fleet.events(events.PROVIDER_RECOVERED)
                       if d["integration"] == INTEGRATION]  # fmt: skip
        assert recovered["probes_failed"] == 2
        assert recovered["held_refreshes_resumed"] == len(held - {prober})
        assert await fleet.gates() == {}
        assert await fleet.held() == set()
        assert await fleet.runtime.breakers.open_scopes() == []
        schedule = await fleet.schedule()
        ramp = answered + len(held - {prober}) / RATE
        assert all(answered - 1e-6 <= schedule[c] <= ramp for c in held - {prober}), schedule
        others = tuple(c for c in cids if c != prober)
        assert await fleet.batch(others, ramp + 1) == {"refreshed": len(others)}
