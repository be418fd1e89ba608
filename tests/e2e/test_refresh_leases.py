"""Through the real worker: a connection being refreshed comes due again before its token
lapses if the refresh never ends (a crashed worker), not after a fixed 300 s lease."""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    consent,
    exchange,
    make_due,
    run_refresh_tick,
    wait_until,
)
from tokenlife.adapters.keys import Keys
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

INTEGRATION = "generic-offline"


async def test_a_refresh_in_flight_is_leased_for_half_the_time_its_token_has_left(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, INTEGRATION, cid, login_hint=cid)
    await exchange(worker, state=callback["state"], code=callback["code"])
    family = callback["code"]
    live = fakes.generic.families[family].live
    fakes.generic.script_refresh(family, Reply(delay=0.8))  # in flight long enough to look
    # A 60-second token, due now: the run of the issue where 7-8 % stayed unrefreshed.
    await make_due(redis, settings, INTEGRATION, cid, expires_at=repr(time.time() + 60))
    keys = Keys(settings.key_prefix, settings.redis_shards)
    member, lock = keys.member(INTEGRATION, cid), keys.lock(INTEGRATION, cid)
    await run_refresh_tick(worker)
    await wait_until(
        lambda: _true(any(r.get("refresh_token") == live for r in fakes.generic.token_requests)),
        timeout=30, what="the worker's refresh request",
    )  # fmt: skip

    leased_until = await redis.zscore(keys.schedule_of(INTEGRATION, cid), member)
    lock_ttl = await redis.pttl(lock) / 1000

    assert leased_until is not None
    # Due again within half the 60 s (not 300 s later), and the lock frees with it.
    assert leased_until <= time.time() + 30
    assert 0 < lock_ttl <= 30

    async def refreshed() -> bool:
        return fakes.generic.families[family].refreshes == 1 and not await redis.exists(lock)

    await wait_until(refreshed, timeout=30, what="the refresh to finish")


async def _true(value: bool) -> bool:
    return value
