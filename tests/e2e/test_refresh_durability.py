"""A rotated refresh token is never dropped: not by a cancelled caller, not by a Redis
outage between the provider's answer and the save (issue 9 §2)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.redis_process import RedisProcess
from tests.support import (
    Fakes,
    WorkerHandle,
    consent,
    exchange,
    stored_connection,
    stream_entries,
    wait_until,
)
from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import Locks
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_store import Backoff, TokenStore
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.refresh_timing import RetryPolicy
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import TransientError
from tokenlife.library import Tokenlife
from tokenlife.providers import load_presets
from tokenlife.runtime import load_config
from tokenlife.services.durable_write import WriteRetry
from tokenlife.services.refresh import Outcome, Refresher, Result
from tokenlife.services.scheduling import SchedulePolicy
from tokenlife.settings import Settings

INTEGRATION = "generic-offline"


async def connected(tl: Tokenlife, worker: WorkerHandle) -> tuple[str, str]:
    cid = "user-" + uuid.uuid4().hex[:12]
    callback = await consent(tl, INTEGRATION, cid, login_hint=cid)
    await exchange(worker, state=callback["state"], code=callback["code"])
    return cid, callback["code"]


def presented(fakes: Fakes, refresh_token: str) -> bool:
    return any(r.get("refresh_token") == refresh_token for r in fakes.generic.token_requests)


async def test_a_cancelled_on_demand_refresh_still_saves_the_rotated_token(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid, family = await connected(tl, worker)
    keys = Keys(settings.key_prefix, settings.redis_shards)
    key, lock = keys.connection(INTEGRATION, cid), keys.lock(INTEGRATION, cid)
    await redis.hset(key, "expires_at", repr(time.time() + 30))  # inside the leeway
    old = await stored_connection(tl, INTEGRATION, cid)
    fakes.generic.script_refresh(family, Reply(delay=0.5))  # slow: the caller gives up
    call = asyncio.ensure_future(tl.get_access_token(INTEGRATION, cid))
    live_before = fakes.generic.families[family].live
    assert live_before is not None
    await wait_until(
        lambda: _true(presented(fakes, live_before)), timeout=10, what="the refresh request"
    )

    call.cancel()  # the API's request timeout, say
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await redis.exists(lock), "the lock went with the caller while the request runs"

    async def saved() -> bool:
        return (await stored_connection(tl, INTEGRATION, cid)).version > old.version

    await wait_until(saved, timeout=10, what="the rotated token to be saved")
    stored = await _stored_refresh_token(settings, cid)
    state = fakes.generic.families[family]
    assert state.refreshes == 1 and stored == state.live != live_before
    assert not state.revoked and state.reuse_detected == 0
    assert not await redis.exists(lock)
    # The stored token is the live one: the next refresh works.
    await redis.hset(key, "expires_at", repr(time.time() + 30))
    fakes.generic.script_refresh(family, Reply())
    await tl.get_access_token(INTEGRATION, cid)
    assert fakes.generic.families[family].refreshes == 2
    assert fakes.generic.families[family].reuse_detected == 0


async def _true(value: bool) -> bool:
    return value


async def _stored_refresh_token(settings: Settings, cid: str) -> str | None:
    async with Tokenlife.from_environment(settings) as other:
        return (await (await other._ready()).tokens.tokens(INTEGRATION, cid)).refresh_token


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path)
    process.start()
    yield process
    process.kill()


class Rig:
    """A Refresher on a Redis of the test's own, against the generic fake."""

    def __init__(self, redis: Redis, settings: Settings, integration: Integration) -> None:
        keys = Keys("durable")
        self.keys, self.redis, self.integration = keys, redis, integration
        self.store = TokenStore(redis, keys, Cipher(settings.encryption_keys))
        self.http = aiohttp.ClientSession()
        self.refresher = Refresher(
            presets=load_presets(), store=self.store, events_=EventStream(redis, keys, 10_000),
            http=self.http, http_timeout=5.0, retry=RetryPolicy(),
            schedule_policy=SchedulePolicy(expiry_lead_seconds=[]), locks=Locks(redis, keys),
            schedule=RefreshSchedule(redis, keys),
            save_retry=WriteRetry(seconds=30.0, base_seconds=0.05, max_delay_seconds=0.2),
        )  # fmt: skip

    async def seed(self, fakes: Fakes, shard: int | None = None) -> tuple[str, str, str]:
        """A connection minted at the fake (in `shard` if given): its id, family and
        refresh token."""
        body = fakes.generic.mint("generic-client", ("openid", "offline_access"), 3600)
        cid = "user-" + uuid.uuid4().hex[:12]
        while shard is not None and self.keys.shard(INTEGRATION, cid) != shard:
            cid = "user-" + uuid.uuid4().hex[:12]
        tokens = TokenSet(
            access_token=body["access_token"], token_type="Bearer",
            refresh_token=body["refresh_token"], expires_at=time.time() + 30,
            lifetime_seconds=3600, lifetime_source="expires_in", granted_scopes=None,
        )  # fmt: skip
        await self.store.save(
            integration=INTEGRATION, connection_id=cid, provider="custom", tokens=tokens,
            verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=("openid",),
            next_check_at=time.time(), now=time.time(),
        )  # fmt: skip
        return cid, body["family"], body["refresh_token"]

    async def refresh_in_flight(
        self, fakes: Fakes
    ) -> tuple[str, str, str, Connection, asyncio.Future[Result]]:
        """A seeded connection whose refresh the fake is answering slowly (0.3 s): its id,
        family, old refresh token, the connection as read, and the refresh's task."""
        cid, family, old = await self.seed(fakes)
        fakes.generic.script_refresh(family, Reply(delay=0.3))
        connection = await self.store.get(INTEGRATION, cid)
        task = asyncio.ensure_future(
            self.refresher.refresh(self.integration, connection, old, time.time())
        )
        await wait_until(lambda: _true(presented(fakes, old)), timeout=10, what="the request")
        return cid, family, old, connection, task


@pytest.fixture
async def rig(own_redis: RedisProcess, settings: Settings) -> AsyncIterator[Rig]:
    config = await load_config(settings)
    client = Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=2)
    built = Rig(client, settings, config.integrations[INTEGRATION])
    yield built
    await built.http.close()
    await client.aclose()


async def test_the_save_is_retried_through_a_redis_crash_and_restart(
    rig: Rig, own_redis: RedisProcess, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenlife.adapters.storage_errors")
    cid, family, _, _, task = await rig.refresh_in_flight(fakes)

    own_redis.kill()  # before the provider answers: the save finds Redis gone
    await wait_until(
        lambda: _true("Redis unavailable" in caplog.text), timeout=10, what="a failed save"
    )
    assert fakes.generic.families[family].refreshes == 1  # rotated: `old` is dead now
    own_redis.start()  # on its AOF
    result = await asyncio.wait_for(task, timeout=30)

    assert result.outcome is Outcome.REFRESHED
    stored = (await rig.store.tokens(INTEGRATION, cid)).refresh_token
    state = fakes.generic.families[family]
    lost = int(stored != state.live)
    assert lost == 0 and not state.revoked, "the rotated refresh token was dropped"


async def test_a_save_that_never_lands_marks_the_connection_and_says_why(
    rig: Rig, own_redis: RedisProcess, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tokenlife.services.refresh")
    rig.refresher._outcomes._writer.retry = WriteRetry(
        seconds=0.5, base_seconds=0.05, max_delay_seconds=0.1
    )
    cid, family, old, _, task = await rig.refresh_in_flight(fakes)
    own_redis.kill()
    await wait_until(
        lambda: _true("could not be saved" in caplog.text), timeout=10, what="the save to give up"
    )
    own_redis.start()
    result = await asyncio.wait_for(task, timeout=60)

    assert result.outcome is Outcome.SAVE_FAILED
    marked = await rig.store.get(INTEGRATION, cid)
    assert (marked.status, marked.status_reason) == (Status.DEGRADED, "refresh_token_may_be_lost")
    assert marked.next_refresh_at is not None and marked.next_refresh_at <= time.time()
    entries = await stream_entries(rig.redis, rig.keys)
    alerts = [json.loads(f["data"]) for _, f in entries if f["type"] == "alert.refresh_failing"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["error"] == "save_failed" and alert["refresh_token_may_be_lost"] is True
    assert alert["rotates_refresh_tokens"] == "unconfirmed"  # a custom provider
    assert "reuse_grace_seconds" in alert and "may be lost" in alert["error_description"]
    live = fakes.generic.families[family].live
    assert live is not None and old not in json.dumps(alert) and live not in json.dumps(alert)


async def test_closing_a_tokenlife_waits_for_a_refresh_in_flight_and_saves_it(
    worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings, tl: Tokenlife
) -> None:
    cid, family = await connected(tl, worker)
    key = Keys(settings.key_prefix, settings.redis_shards).connection(INTEGRATION, cid)
    await redis.hset(key, "expires_at", repr(time.time() + 30))  # inside the leeway
    old = await stored_connection(tl, INTEGRATION, cid)
    live_before = fakes.generic.families[family].live
    # Slower than the caller's bound, faster than the HTTP timeout (1 s).
    fakes.generic.script_refresh(family, Reply(delay=0.6))
    impatient = Tokenlife.from_environment(
        settings.model_copy(update={"api_token_wait_seconds": 0.2})
    )
    with pytest.raises(TransientError):
        await impatient.get_access_token(INTEGRATION, cid)
    assert presented(fakes, cast(str, live_before))

    await impatient.aclose()  # what the one-shot get_access_token does next

    stored = await stored_connection(tl, INTEGRATION, cid)
    state = fakes.generic.families[family]
    assert stored.version > old.version and stored.consecutive_failures == 0, stored
    assert state.refreshes == 1 and state.reuse_detected == 0
    assert await _stored_refresh_token(settings, cid) == state.live != live_before


async def test_a_save_that_finds_a_newer_version_after_a_rotation_alerts_and_marks(
    rig: Rig, fakes: Fakes
) -> None:
    """What the residual race leaves (a claim after a Redis outage longer than the lock):
    another writer got there while our rotated token waited to be saved."""
    cid, family, _, connection, task = await rig.refresh_in_flight(fakes)
    # Another worker's write lands first (its own refresh, in the real race).
    assert await rig.store.update(connection, now=time.time(), set_fields={"last_error": "x"})

    result = await asyncio.wait_for(task, timeout=10)

    assert result.outcome is Outcome.CONFLICT
    assert fakes.generic.families[family].refreshes == 1  # the provider did rotate
    marked = await rig.store.get(INTEGRATION, cid)
    assert (marked.status, marked.status_reason) == (Status.DEGRADED, "refresh_token_may_be_lost")
    assert marked.next_refresh_at is not None and marked.next_refresh_at <= time.time()
    entries = await stream_entries(rig.redis, rig.keys)
    alerts = [json.loads(f["data"]) for _, f in entries if f["type"] == "alert.refresh_failing"]
    assert len(alerts) == 1, alerts
    assert alerts[0]["error"] == "rotation_conflict"
    assert alerts[0]["refresh_token_may_be_lost"] is True
    live = fakes.generic.families[family].live
    assert live is not None and live not in json.dumps(alerts[0])


async def test_a_refresh_of_any_connection_brings_the_providers_waiting_retries_forward(
    rig: Rig, fakes: Fakes
) -> None:
    """The provider answers again: the first connection to show it need not have been
    failing itself (its refresh was simply due). A success pulls its own shard's backoff
    set forward (each shard's successes pull their own), so both are in one shard."""
    cid, _, old = await rig.seed(fakes)
    shard = rig.keys.shard(INTEGRATION, cid)
    waiting, _, _ = await rig.seed(fakes, shard)
    far = time.time() + 900
    failing = await rig.store.get(INTEGRATION, waiting)
    assert await rig.store.update(
        failing, now=time.time(), schedule_at=far, backoff=Backoff.ADD,
        set_fields={"consecutive_failures": "4", "last_error": "temporarily_unavailable"},
    )  # fmt: skip
    # It last failed a minute ago (a pull-forward leaves fresher failures alone).
    await rig.redis.hset(
        rig.keys.connection(INTEGRATION, waiting), "last_failed_at", time.time() - 60
    )
    connection = await rig.store.get(INTEGRATION, cid)
    assert connection.consecutive_failures == 0

    result = await rig.refresher.refresh(rig.integration, connection, old, time.time())

    assert result.outcome is Outcome.REFRESHED
    moved = await rig.store.get(INTEGRATION, waiting)
    assert moved.next_refresh_at is not None and moved.next_refresh_at <= time.time() + 2.0
    member = rig.keys.member(INTEGRATION, waiting)
    assert await rig.redis.zscore(rig.keys.schedule(shard), member) == moved.next_refresh_at
    assert await rig.redis.zcard(rig.keys.backoff("custom", shard)) == 0


async def test_a_success_clears_the_failure_fields_of_the_stretch(rig: Rig, fakes: Fakes) -> None:
    cid, _, old = await rig.seed(fakes)
    failed = time.time() - 5
    assert await rig.store.update(
        await rig.store.get(INTEGRATION, cid), now=time.time(),
        set_fields={"consecutive_failures": "2", "failing_since": repr(failed),
                    "last_failed_at": repr(failed), "outcome_unknown_at": repr(failed),
                    "refresh_failing_alerted": "1", "last_error": "timeout"},
    )  # fmt: skip
    connection = await rig.store.get(INTEGRATION, cid)

    result = await rig.refresher.refresh(rig.integration, connection, old, time.time())

    assert result.outcome is Outcome.REFRESHED
    stored = await rig.redis.hgetall(rig.keys.connection(INTEGRATION, cid))
    left = {"last_failed_at", "outcome_unknown_at", "refresh_failing_alerted", "last_error"}
    assert "version" in stored and left & set(stored) == set()
