"""Code exchanges and on-demand refreshes in /metrics: real exchanges run by the real
worker against the fake providers, a real on-demand refresh through POST /token, and the
scrape read back from the app (issue 10)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import Fakes, WorkerHandle, connect, consent, exchange, wait_until
from tokenlife.adapters.fleet_metrics import FleetMetrics
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.outcome_counters import (
    EXCHANGE_FAILURE_REASONS,
    ON_DEMAND_OUTCOMES,
    ExchangeOutcome,
    exchange_field,
)
from tokenlife.errors import TransientError
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.refresh import Outcome
from tokenlife.settings import Settings
from tokenlife.web.app import create_app
from tokenlife.web.metrics import render

KEY = "outcome-metrics-key-0123456789"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def client(settings: Settings, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    configured = settings.model_copy(update={"api_keys": (KEY,)})
    runtime = await Runtime.open(await load_config(configured))
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as test_client:
        yield test_client
    await runtime.refresher.wait_running()
    await runtime.close()


async def scrape(client: TestClient[Any, Any]) -> Series:
    response = await client.get("/metrics")
    assert response.status == 200
    return parse(await response.text())


def exchanges(provider: str, outcome: str, reason: str = "") -> dict[str, Any]:
    return {"name": "tokenlife_exchanges_total", "provider": provider, "outcome": outcome,
            "reason": reason}  # fmt: skip


async def test_exchanges_are_counted_by_how_they_ended(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle
) -> None:
    ends = {
        "authorized": exchanges("google", "authorized"),
        "missing": exchanges("custom", "refresh_token_missing"),  # google-as-custom
        "denied": exchanges("custom", "failed", "access_denied"),
        "unknown state": exchanges("unknown", "failed", "invalid_state"),
    }
    before = await scrape(client)
    # Every series a configured provider can have is there before anything happened.
    for labels in (ends["authorized"], ends["missing"], ends["denied"]):
        name = labels["name"]
        assert (name, frozenset((k, v) for k, v in labels.items() if k != "name")) in before

    cid = f"metrics-{uuid.uuid4().hex[:8]}"
    assert (await connect(tl, worker, "google", cid, login_hint=cid))["outcome"] == "refreshable"
    missing = await connect(tl, worker, "google-as-custom", f"{cid}-m", login_hint=cid)
    assert missing["outcome"] == "refresh_token_missing"
    refused = await consent(tl, "generic", f"{cid}-d", deny="1")
    assert (await exchange(worker, state=refused["state"], error=refused["error"]))["error"] == (
        "access_denied"
    )
    assert (await exchange(worker, state="no-such-state", code="x"))["error"] == "invalid_state"
    replayed = await consent(tl, "generic", f"{cid}-r", deny="1")
    for _ in range(2):  # a task delivered twice ends once, and is counted once
        await exchange(worker, state=replayed["state"], error=replayed["error"])

    after = await scrape(client)
    counted = {
        end: value(after, **labels) - value(before, **labels) for end, labels in ends.items()
    }
    assert counted == {"authorized": 1, "missing": 1, "denied": 2, "unknown state": 1}


async def test_an_on_demand_refresh_is_counted_and_timed(
    client: TestClient[Any, Any], tl: Tokenlife, worker: WorkerHandle, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = f"metrics-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic-offline", cid, login_hint=cid)
    refreshed = {"provider": "custom", "outcome": "refreshed"}
    timed = {"provider": "custom"}
    before = await scrape(client)
    assert ("tokenlife_on_demand_refreshes_total", frozenset(refreshed.items())) in before

    url = f"/api/connections/generic-offline/{cid}/token"
    headers = {"Authorization": f"Bearer {KEY}"}
    assert (await client.post(url, headers=headers)).status == 200  # fresh: no refresh
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic-offline", cid)
    await redis.hset(key, "expires_at", repr(time.time() + 10))
    assert (await client.post(url, headers=headers)).status == 200  # refreshed first

    async def counted() -> bool:  # written just after the answer, off the caller's path
        now = await scrape(client)
        name = "tokenlife_on_demand_refreshes_total"
        return value(now, name, **refreshed) > value(before, name, **refreshed)

    await wait_until(counted, timeout=10, what="the on-demand refresh counted")
    after = await scrape(client)
    for name, labels, expected in [
        ("tokenlife_on_demand_refreshes_total", refreshed, 1),
        ("tokenlife_on_demand_refresh_duration_seconds_count", timed, 1),
        ("tokenlife_on_demand_refresh_duration_seconds_bucket", {**timed, "le": "+Inf"}, 1),
        ("tokenlife_refreshes_total", refreshed, 0),  # not a scheduled one
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == expected, name
    took = value(after, "tokenlife_on_demand_refresh_duration_seconds_sum", **timed) - value(
        before, "tokenlife_on_demand_refresh_duration_seconds_sum", **timed
    )
    assert 0 < took < 10


async def test_a_first_scrape_lists_every_known_series_at_zero(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(f"{settings.key_prefix}-empty-{uuid.uuid4().hex[:8]}")
    figures = await FleetMetrics(redis, keys, (), providers=("google", "custom")).read(0.0)
    series = parse(render(figures).decode())
    for provider in ("google", "custom"):
        for outcome in ON_DEMAND_OUTCOMES:
            labels = {"provider": provider, "outcome": outcome}
            assert series[("tokenlife_on_demand_refreshes_total", frozenset(labels.items()))] == 0
        for reason in EXCHANGE_FAILURE_REASONS:
            labels = {"provider": provider, "outcome": "failed", "reason": reason}
            assert series[("tokenlife_exchanges_total", frozenset(labels.items()))] == 0
    exchange_series = [s for s in series if s[0] == "tokenlife_exchanges_total"]
    assert len(exchange_series) == 2 * (3 + len(EXCHANGE_FAILURE_REASONS))


def test_the_on_demand_outcomes_are_the_refresh_outcomes() -> None:
    assert tuple(o.value for o in Outcome) == ON_DEMAND_OUTCOMES


@pytest.mark.parametrize(
    ("outcome", "error", "field"),
    [
        (ExchangeOutcome.AUTHORIZED, None, "exchange:google:authorized:"),
        (ExchangeOutcome.AUTHORIZED, "access_denied", "exchange:google:authorized:"),
        (ExchangeOutcome.FAILED, "access_denied", "exchange:google:failed:access_denied"),
        (ExchangeOutcome.FAILED, "subject_mismatch", "exchange:google:failed:subject_mismatch"),
        # Whatever a provider or a browser sends as `error` can't mint a series.
        (ExchangeOutcome.FAILED, "made_up_by_someone", "exchange:google:failed:other"),
        (ExchangeOutcome.FAILED, "x:y\n", "exchange:google:failed:other"),
        (ExchangeOutcome.FAILED, None, "exchange:google:failed:other"),
    ],
)
def test_a_failure_reason_is_one_of_a_known_set(
    outcome: ExchangeOutcome, error: str | None, field: str
) -> None:
    assert exchange_field("google", outcome, error) == field


async def test_a_refresh_whose_caller_gave_up_is_counted_when_it_ends(
    settings: Settings, fakes: Fakes, tl: Tokenlife, worker: WorkerHandle, redis: Redis
) -> None:
    cid = f"metrics-{uuid.uuid4().hex[:8]}"
    await connect(tl, worker, "generic-offline", cid, login_hint=cid)
    family = next(f for f, fam in fakes.generic.families.items() if fam.grant.user == cid)
    fakes.generic.script_refresh(family, Reply(delay=0.6))  # within the 1 s HTTP timeout
    key = Keys(settings.key_prefix, settings.redis_shards).connection("generic-offline", cid)
    await redis.hset(key, "expires_at", repr(time.time() + 10))
    configured = settings.model_copy(update={"api_token_wait_seconds": 0.2})
    runtime = await Runtime.open(await load_config(configured))
    keys = runtime.keys
    metrics = FleetMetrics(redis, keys, (), providers=("custom",))
    name, refreshed = "tokenlife_on_demand_refreshes_total", {"provider": "custom"}
    try:
        start = value(parse(render(await metrics.read(0)).decode()), name,
                      outcome="refreshed", **refreshed)  # fmt: skip
        with pytest.raises(TransientError):  # the caller's bound ran out first
            await runtime.access.get("generic-offline", cid)

        async def counted() -> bool:
            figures = parse(render(await metrics.read(0)).decode())
            return value(figures, name, outcome="refreshed", **refreshed) == start + 1

        await wait_until(counted, timeout=10, what="the refresh counted after its caller left")
    finally:
        await runtime.close()
