"""services/dashboard.py against real Redis with an injected clock: what a key sees, and
each outcome of "refresh now" (the worker's write stood in for by the queue callback)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.services.dashboard import DashboardReader
from tokenlife.settings import Settings

NOW = 1_800_000_000.0


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-dash-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(redis: Redis, keys: Keys) -> TokenStore:
    cipher = Cipher((Fernet.generate_key().decode(),))
    return TokenStore(redis, keys, cipher, clock=lambda: NOW)


async def save(
    store: TokenStore, integration: str, status: Status, *, refresh: bool = True,
    expires_in: float = 3600, name: str = "",
) -> str:  # fmt: skip
    connection_id = name or f"conn-{uuid.uuid4().hex[:10]}"
    await store.save(
        integration=integration, connection_id=connection_id, provider="custom",
        tokens=TokenSet(
            access_token="access-secret-value", token_type="Bearer",
            refresh_token="refresh-secret-value" if refresh else None,
            expires_at=NOW + expires_in, lifetime_seconds=3600, lifetime_source="expires_in",
            granted_scopes=("openid",),
        ),
        verdict=Verdict.REFRESHABLE if refresh else Verdict.REFRESH_TOKEN_MISSING,
        status=status, scopes_requested=("openid",), next_check_at=NOW + 1800, now=NOW - 60,
    )  # fmt: skip
    return connection_id


async def publish(redis: Redis, keys: Keys, kind: str, data: dict[str, Any]) -> None:
    """An event where a script would put it: its connection's shard's stream."""
    await redis.xadd(keys.events(keys.event_shard(data)), {"type": kind, "data": json.dumps(data)})


async def test_a_key_sees_its_integrations_figures_only(
    redis: Redis, keys: Keys, store: TokenStore
) -> None:
    await save(store, "crm", Status.ACTIVE)
    overdue = await save(store, "crm", Status.ACTIVE, expires_in=-30)  # lapsed, unrefreshed
    lapsing = await save(store, "crm", Status.DEGRADED, refresh=False, expires_in=2 * 86400)
    await save(store, "crm", Status.DEGRADED, refresh=False, expires_in=9 * 86400)
    await save(store, "hr", Status.REAUTHORIZATION_REQUIRED)
    await publish(redis, keys, "alert.refresh_token_missing", {
        "integration": "crm", "connection_id": lapsing, "message": "m",
        "diagnosis": [{"cause": "c", "fix": "f", "evidence": "e"}]})  # fmt: skip
    await publish(redis, keys, "alert.reauthorization_required",
                  {"integration": "hr", "connection_id": "x"})  # fmt: skip
    await redis.xadd(keys.alerts_dead, {"target": "t", "error": "HTTP 500", "payload": json.dumps(
        {"integration": "hr", "type": "alert.reauthorization_required"})})  # fmt: skip
    await RefreshSchedule(redis, keys).count({}, {"crm:refreshed": 4, "hr:crashed": 1}, NOW - 90)
    reader = DashboardReader(redis, keys, store, ["crm", "hr"])

    figures = await reader.read(lambda name: name == "crm", NOW)
    assert figures.integrations == ("crm",)
    assert figures.by_status == {"active": 1, "degraded": 3, "reauthorization_required": 0}
    assert {a.connection.connection_id for a in figures.attention} >= {overdue, lapsing}
    shown = {a.connection.connection_id: a for a in figures.attention}
    assert shown[overdue].connection.status_reason == "refresh_overdue"
    diagnosed = shown[lapsing].alert
    assert diagnosed is not None and diagnosed["diagnosis"][0]["fix"] == "f"
    assert [c.connection_id for c in figures.expiring] == [lapsing]  # 9 days is beyond 7
    assert figures.refreshes.totals == (("refreshed", 4),)
    assert [a.type for a in figures.alerts] == ["alert.refresh_token_missing"]
    assert figures.dead_letters == ()

    everything = await reader.read(lambda name: True, NOW)
    assert everything.by_status["reauthorization_required"] == 1
    assert everything.attention[0].connection.status is Status.REAUTHORIZATION_REQUIRED
    assert dict(everything.refreshes.totals) == {"refreshed": 4, "crashed": 1}
    assert [d.error for d in everything.dead_letters] == ["HTTP 500"]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        self.now += 0.05  # every reading moves time on: waits end without real waiting
        return self.now


@pytest.mark.parametrize(
    ("status", "refresh", "worker_writes", "outcome"),
    [
        (Status.DEGRADED, False, None, "no_refresh_token"),
        (Status.REAUTHORIZATION_REQUIRED, True, None, "reauthorization_required"),
        (Status.ACTIVE, True, None, "queued"),  # the worker has not written yet
        (Status.ACTIVE, True, {"last_refreshed_at": repr(NOW + 1)}, "refreshed"),
        (Status.ACTIVE, True, {"last_error": "invalid_grant"}, "failed"),
    ],
)
async def test_refresh_now_reports_what_the_worker_did(
    redis: Redis, keys: Keys, store: TokenStore, status: Status, refresh: bool,
    worker_writes: dict[str, str] | None, outcome: str,
) -> None:  # fmt: skip
    cid = await save(store, "crm", status, refresh=refresh)
    queued: list[float] = []

    async def queue(due: float) -> None:
        queued.append(due)
        if worker_writes is not None:
            writes = {**worker_writes, "version": "9"}
            await redis.hset(keys.connection("crm", cid), mapping=writes)  # type: ignore[arg-type]

    reader = DashboardReader(redis, keys, store, ["crm"])
    got, after, refusal = await reader.refresh_now(
        "crm", cid, queue, wait_seconds=0.3, clock=Clock()
    )
    assert got == outcome
    if outcome in ("no_refresh_token", "reauthorization_required"):
        assert queued == []
        assert refusal is not None and refusal.kind == outcome and refusal.fix
    else:
        assert refusal is None
        assert queued == [NOW + 1800]  # the stored due time, as POST /refresh sends it
    if worker_writes is not None:
        assert after.version == 9
