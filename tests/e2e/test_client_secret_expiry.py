"""An expired client secret through the real worker and the fake Microsoft: the fake refuses
the secret with AADSTS7000222 for every connection of the integration; one
alert.client_secret_expired reaches on-call, no connection is sent to re-authorization,
and once the secret works again the connections refresh and the alert resolves."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support import (
    Fakes,
    WorkerHandle,
    connect,
    make_due,
    run_refresh_tick,
    stream_entries,
    wait_until,
)
from tokenlife.adapters.keys import Keys
from tokenlife.core import events
from tokenlife.core.secret_expiry import SECRET_EXPIRED_RETRY_SECONDS
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

INTEGRATION = "microsoft"


async def deliver(worker: WorkerHandle) -> None:
    result = worker.app.send_task("tokenlife.deliver_alerts", ignore_result=False)
    await asyncio.to_thread(result.get, timeout=60)


async def events_after(
    redis: Redis, keys: Keys, seen: set[str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """The events of every shard's stream, in stream order, but those whose ids are in
    `seen`: (entry id, type, data)."""
    return [(entry_id, fields["type"], json.loads(fields["data"]))
            for entry_id, fields in await stream_entries(redis, keys)
            if entry_id not in seen]  # fmt: skip


async def due(redis: Redis, keys: Keys, connection_id: str) -> float:
    schedule = keys.schedule_of(INTEGRATION, connection_id)
    return await redis.zscore(schedule, keys.member(INTEGRATION, connection_id)) or 0.0


def received(fakes: Fakes, kind: str) -> list[dict[str, Any]]:
    payloads = [json.loads(r.body) for r in fakes.receiver.at("/session-hook")]
    return [p for p in payloads
            if p["type"] == events.CLIENT_SECRET_EXPIRED and p["kind"] == kind]  # fmt: skip


async def test_an_expired_secret_is_one_alert_and_the_connections_recover_by_themselves(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    await deliver(worker)  # the delivery group reads from here on
    cids = ["user-" + uuid.uuid4().hex[:12] for _ in range(3)]
    for cid in cids:
        summary = await connect(tl, worker, INTEGRATION, cid, login_hint=cid)
        assert summary["refresh_token_received"], summary
    keys = Keys(settings.key_prefix, settings.redis_shards)
    records = [keys.connection(INTEGRATION, cid) for cid in cids]
    seen = {entry_id for entry_id, _, _ in await events_after(redis, keys, set())}

    async def fields(name: str) -> list[str | None]:
        return [await redis.hget(key, name) for key in records]  # type: ignore[misc]

    async def since(kind: str) -> list[dict[str, Any]]:
        found = await events_after(redis, keys, seen)
        return [d for _, t, d in found if t == kind and d["integration"] == INTEGRATION]

    fakes.microsoft.expired_secrets.add("ms-secret")
    try:
        # The first connection's access token has lapsed (a refusal that lasts); the
        # others' still work.
        await make_due(redis, settings, INTEGRATION, cids[0], expires_at=repr(time.time() - 60))
        for cid in cids[1:]:
            await make_due(redis, settings, INTEGRATION, cid)
        refused_at = time.time()
        await run_refresh_tick(worker)

        async def all_refused() -> bool:
            return await fields("last_error") == ["invalid_client"] * len(cids)

        await wait_until(all_refused, timeout=30, what="every connection refused")
    finally:
        fakes.microsoft.expired_secrets.discard("ms-secret")

    [alert] = await since(events.CLIENT_SECRET_EXPIRED)
    assert alert["connection_id"] is None
    assert "AADSTS7000222" in alert["error_description"]
    assert "Certificates & secrets" in alert["fix"]
    refused_ones = {d.get("connection_id") for _, t, d in await events_after(redis, keys, seen)
                    if t in (events.REAUTHORIZATION_REQUIRED, events.REFRESH_FAILING)}  # fmt: skip
    assert refused_ones.isdisjoint(cids)
    # A connection whose token works stays active; the lapsed one is degraded, the expired
    # secret named as the reason (re-authorizing would not help).
    assert await fields("status") == ["degraded", "active", "active"]
    assert await fields("status_reason") == ["client_secret_expired", None, None]
    # Every retry would be refused: the lapsed one's hours out, the others' when their
    # token lapses (that refusal degrades them); no recovery elsewhere pulls them in.
    dues = [await due(redis, keys, cid) for cid in cids]
    assert dues[0] >= refused_at + SECRET_EXPIRED_RETRY_SECONDS - 5
    expiries = [float(at or 0) for at in await fields("expires_at")]
    assert dues[1:] == pytest.approx(expiries[1:], abs=1e-3) and min(dues[1:]) > refused_at + 600
    held = [float(at or 0) for at in await fields("retry_not_before")]
    assert held == pytest.approx(dues, abs=1e-3)
    await deliver(worker)

    async def alerted() -> bool:
        return len(received(fakes, "alert")) >= 1

    await wait_until(alerted, timeout=30, what="alert.client_secret_expired at the webhook")
    [message] = received(fakes, "alert")
    assert message["integration"] == INTEGRATION and message["severity"] == "critical"

    # Their latest failure a timeout since (the refusals before it): still a recovery.
    for key in records:
        await redis.hset(key, "last_error", "endpoint_timeout")
    # The secret was replaced. Beat's probe brings one connection of the integration
    # forward (one at a time, not every connection asking); its success brings the rest.
    result = worker.app.send_task("tokenlife.check_client_secrets", ignore_result=False)
    await asyncio.to_thread(result.get, timeout=30)
    dues = [await due(redis, keys, cid) for cid in cids]
    assert sum(1 for d in dues if 0 < d <= time.time()) == 1, dues
    await run_refresh_tick(worker)

    async def all_refreshed() -> bool:
        await run_refresh_tick(worker)
        return await fields("last_error") == [None] * len(cids)

    await wait_until(all_refreshed, timeout=30, what="every connection refreshed")
    assert len(await since(events.CLIENT_SECRET_ACCEPTED)) == 1
    await deliver(worker)

    async def resolved() -> bool:
        return len(received(fakes, "resolved")) >= 1

    await wait_until(resolved, timeout=30, what="the RESOLVED notification")
    assert len(received(fakes, "resolved")) == 1
    assert await fields("status") == ["active"] * len(cids)


async def test_beat_checks_the_client_secrets_through_the_worker(
    worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    """The worker's task looks at the configured integrations: a warning sent earlier for
    one whose file now gives no date (rotated early, date removed) resolves, once."""
    keys = Keys(settings.key_prefix, settings.redis_shards)
    await redis.set(keys.client_secret_expiring_open(INTEGRATION), "1")
    seen = {entry_id for entry_id, _, _ in await events_after(redis, keys, set())}
    for _ in range(2):
        result = worker.app.send_task("tokenlife.check_client_secrets", ignore_result=False)
        assert await asyncio.to_thread(result.get, timeout=30) == []  # no date: no warning
    found = [(t, d) for _, t, d in await events_after(redis, keys, seen)]
    accepted = events.CLIENT_SECRET_ACCEPTED
    resolved = [d for t, d in found if t == accepted and d["integration"] == INTEGRATION]
    assert [(d["expired_since"], d["renewed_until"]) for d in resolved] == [(None, None)]
    assert "tokenlife.check_client_secrets" in worker.app.conf.beat_schedule
