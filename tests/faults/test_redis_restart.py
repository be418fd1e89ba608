"""Redis SIGKILLed during a rotation storm and started again on its AOF (fsync every second).

The worker, its embedded beat and the API reconnect by themselves; readiness returns and
the first request after Redis is back does not fail; every connection is refreshed again;
no rotated refresh token is dropped (the provider rotates strictly, so a dropped one would
show as a revoked family); and nothing Redis acknowledged before the kill is missing.
A SIGKILL of the process (not of the machine) loses nothing acknowledged: Redis writes
its AOF buffer before it replies, and the page cache survives the process; `everysec`
only bounds what a power cut could lose.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from tests.fakes.base import Family
from tests.faults.harness import (
    ApiProcess,
    FaultFakes,
    Key,
    RedisServer,
    WorkerGroup,
    make_settings,
    open_runtime,
    record_figure,
    refreshed_since,
    seed,
)
from tests.support import client_app, wait_until

from tokenlife.adapters.keys import Keys
from tokenlife.runtime import Runtime

CONNECTIONS = 150
# Every connection refreshed again within a token's life after Redis is back.
RECOVERY_SECONDS = 60  # one access-token lifetime (minute_tokens)


async def versions(redis: Redis, layout: Keys, keys: list[Key]) -> dict[Key, int]:
    async with redis.pipeline(transaction=False) as pipe:
        for integration, cid in keys:
            pipe.hget(layout.connection(integration, cid), "version")
        found = await pipe.execute()
    return {k: int(v) if v is not None else -1 for k, v in zip(keys, found, strict=True)}


async def stream_length(redis: Redis, layout: Keys) -> int:
    """Entries in every shard's event stream."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in layout.all_shards:
            pipe.xlen(layout.events(shard))
        return sum(int(n) for n in await pipe.execute())


async def readiness(api: ApiProcess) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{api.url}/readyz") as response,
    ):
        return response.status, await response.text()


@pytest.mark.faults
@pytest.mark.timeout(300)
async def test_redis_killed_and_restarted_on_its_aof_during_a_storm(
    fault_fakes: FaultFakes,
    slow_refreshes: None,
    minute_tokens: int,
    own_redis: RedisServer,
    workers: list[WorkerGroup],
    runtimes: list[Runtime],
    scratch: Path,
) -> None:
    settings = make_settings(own_redis.url, fault_fakes)
    layout = Keys(settings.key_prefix, settings.redis_shards)
    runtime = await open_runtime(settings)
    runtimes.append(runtime)
    strict = fault_fakes.strict
    seeded = await seed(runtime, fault_fakes, "strict", CONNECTIONS, lifetime=minute_tokens,
                        now=time.time(), prefix="r")  # fmt: skip
    families = {("strict", cid): family for cid, family in seeded.items()}
    keys = sorted(families)

    def family(key: Key) -> Family:
        return strict.families[families[key]]

    group = WorkerGroup(settings, scratch, "redis-restart")
    workers.append(group)
    app = client_app(settings)
    group.start()
    group.wait_ready(app)
    api = ApiProcess(settings, scratch)
    api.start()
    try:

        async def api_ready() -> bool:
            try:
                return (await readiness(api))[0] == 200
            except aiohttp.ClientError:
                return False

        await wait_until(api_ready, timeout=60, what="the API to be ready before the kill")

        async def storm_in_flight() -> bool:
            return strict.refreshing_now > 0

        await wait_until(storm_in_flight, timeout=60, what="refreshes in flight")
        before = await versions(runtime.redis, layout, keys)
        events_before = await stream_length(runtime.redis, layout)
        own_redis.kill()
        killed_at = time.time()
        own_redis.start()
        restarted_at = time.time()

        # The test's own client reconnects through a fresh runtime: the old pool is stale.
        after_runtime = await open_runtime(settings)
        runtimes.append(after_runtime)
        after = await versions(after_runtime.redis, layout, keys)
        missing = [k for k in keys if after[k] < before[k]]
        events_after = await stream_length(after_runtime.redis, layout)
        first_status, first_body = await readiness(api)
        at_restart = {k: family(k).refreshes for k in keys}

        await wait_until(api_ready, timeout=60, what="the API to be ready again")
        api_ready_after = time.time() - restarted_at
        pending = set(keys)
        try:
            await wait_until(
                refreshed_since(after_runtime, pending, at_restart, family),
                timeout=RECOVERY_SECONDS,
                what="every connection refreshed after the restart",
            )
        finally:
            record_figure(
                "redis_restart", connections=CONNECTIONS,
                seconds_down=round(restarted_at - killed_at, 1),
                versions_missing=len(missing), events_before=events_before,
                events_after=events_after, first_readyz_status=first_status,
                api_ready_after_seconds=round(api_ready_after, 1),
                not_refreshed=len(pending),
                seconds_to_refresh_all=None if pending else round(time.time() - restarted_at, 1),
                families_revoked=sum(family(k).revoked for k in keys),
                worker_alive=group.alive(),
            )  # fmt: skip
        assert group.alive(), "the worker exited when Redis went away"
        assert missing == [], f"{len(missing)} acknowledged versions missing: {missing[:5]}"
        assert events_after >= events_before
        assert first_status == 200, f"first readiness check after the restart: {first_body}"
        revoked = [k for k in keys if family(k).revoked]
        assert revoked == [], f"{len(revoked)} rotated refresh tokens dropped"
    finally:
        api.stop()
