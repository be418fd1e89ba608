"""kill -9 of a whole worker (main process, pool and embedded beat) during a rotation storm,
twice, with a worker started again each time.

Afterwards every connection has been refreshed again, or, at the strict provider only, its
family was revoked by reuse detection and the connection is flagged with its alert. The
families lost are at most the refreshes in flight at the kills: those the provider answered
(and so rotated) but whose new token the worker had not saved. No client can save an
answer it never received; docs/reliability.md explains what that window costs per provider.
At the provider with a reuse grace window nothing is lost: the stored token is sent again
inside the window.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.fakes.base import Family
from tests.faults.harness import (
    FaultFakes,
    Key,
    RedisServer,
    WorkerGroup,
    make_settings,
    open_runtime,
    record_figure,
    refreshed_since,
    seed,
    stored_refresh_tokens,
)
from tests.support import client_app, stream_events, wait_until

from tokenlife.core import events
from tokenlife.core.policy import Status
from tokenlife.runtime import Runtime

PER_PROVIDER = 100
KILLS = 2
# A connection must be refreshed again before a token issued just before the kill lapses.
# Raise it (the environment variable) only to measure how long recovery really takes.
RECOVERY_SECONDS = float(os.environ.get("TOKENLIFE_FAULTS_RECOVERY_SECONDS", 60))


@pytest.mark.faults
@pytest.mark.timeout(400 + 2 * RECOVERY_SECONDS)
async def test_kill_9_of_the_whole_worker_during_a_rotation_storm(
    fault_fakes: FaultFakes,
    slow_refreshes: None,
    minute_tokens: int,
    own_redis: RedisServer,
    workers: list[WorkerGroup],
    runtimes: list[Runtime],
    scratch: Path,
) -> None:
    settings = make_settings(own_redis.url, fault_fakes)
    runtime = await open_runtime(settings)
    runtimes.append(runtime)
    strict, grace = fault_fakes.strict, fault_fakes.grace
    now = time.time()
    families: dict[Key, str] = {}
    for integration in ("strict", "grace"):
        seeded = await seed(runtime, fault_fakes, integration, PER_PROVIDER,
                            lifetime=minute_tokens, now=now, prefix=integration)  # fmt: skip
        families.update({(integration, cid): family for cid, family in seeded.items()})
    keys = sorted(families)

    def family(key: Key) -> Family:
        return fault_fakes.provider(key[0]).families[families[key]]

    group = WorkerGroup(settings, scratch, "killed")
    workers.append(group)
    app = client_app(settings)
    group.start()
    group.wait_ready(app)

    in_flight_total = {"strict": 0, "grace": 0}
    for kill in range(1, KILLS + 1):

        async def storm_in_flight() -> bool:
            return strict.refreshing_now > 0 and grace.refreshing_now > 0

        await wait_until(storm_in_flight, timeout=60, what="refreshes in flight at both")
        group.kill()
        killed_at = time.time()

        async def provider_done() -> bool:  # requests it received run to their end
            return strict.refreshing_now == 0 and grace.refreshing_now == 0

        await wait_until(provider_done, timeout=10, what="the providers to finish answering")
        at_kill = {k: family(k).refreshes for k in keys}
        stored = await stored_refresh_tokens(runtime, keys)
        # Answered (rotated) by the provider, never saved: the refreshes in flight.
        in_flight = [k for k in keys if not family(k).revoked and family(k).live != stored[k]]
        for integration in in_flight_total:
            in_flight_total[integration] += sum(k[0] == integration for k in in_flight)

        group.start()
        group.wait_ready(app)
        restarted_at = time.time()
        pending = set(keys)
        recovered = refreshed_since(runtime, pending, at_kill, family)
        try:
            await wait_until(recovered, timeout=RECOVERY_SECONDS,
                             what="every connection refreshed after the restart")  # fmt: skip
        except AssertionError:
            record_figure(
                "worker_kill", kill=kill, connections=len(keys),
                in_flight_at_kill={i: sum(k[0] == i for k in in_flight) for i in in_flight_total},
                not_refreshed_after_seconds=RECOVERY_SECONDS,
                not_refreshed={i: sum(k[0] == i for k in pending) for i in in_flight_total},
            )  # fmt: skip
            raise AssertionError(
                f"kill {kill}: {len(pending)}/{len(keys)} connections not refreshed "
                f"{RECOVERY_SECONDS:.0f} s after the restart ({len(in_flight)} in flight at "
                f"the kill): {sorted(pending)[:10]}"
            ) from None
        record_figure(
            "worker_kill", kill=kill, connections=len(keys),
            in_flight_at_kill={i: sum(k[0] == i for k in in_flight) for i in in_flight_total},
            seconds_down=round(restarted_at - killed_at, 1),
            seconds_to_refresh_all_after_restart=round(time.time() - restarted_at, 1),
            families_lost_so_far={i: sum(k[0] == i and family(k).revoked for k in keys)
                           for i in in_flight_total},
        )  # fmt: skip

    lost = [k for k in keys if family(k).revoked]
    assert [k for k in lost if k[0] == "grace"] == [], "the grace window should save these"
    assert sum(family(k).reuse_detected for k in keys if k[0] == "grace") == 0
    assert len(lost) <= in_flight_total["strict"], (lost, in_flight_total)
    flagged = {
        data["connection_id"]
        for kind, data in await stream_events(runtime.redis, settings.key_prefix)
        if kind == events.REAUTHORIZATION_REQUIRED
    }
    for integration, cid in lost:
        connection = await runtime.tokens.get(integration, cid)
        assert connection.status is Status.REAUTHORIZATION_REQUIRED, (cid, connection.status)
        assert cid in flagged, f"{cid} lost without an {events.REAUTHORIZATION_REQUIRED}"
    record_figure("worker_kill", kills=KILLS, in_flight_total=in_flight_total,
                  families_lost=len(lost))  # fmt: skip
