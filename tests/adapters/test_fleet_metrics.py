"""Fleet metrics against the real Redis: figures written by the real adapters and services,
read back through the collector, and checked in the parsed text exposition."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support import Fakes, put_on_schedule
from tokenlife.adapters import status_counts
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.fleet_metrics import LATENCY_BUCKETS, FleetMetrics, latency_fields
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.provider_breakers import ProviderBreakers
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events
from tokenlife.core.notifications import SEVERITY
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.provider_breaker import BreakerPolicy
from tokenlife.core.tokens import TokenSet
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.metrics import METRICS, metrics, render

NOW = 1_700_000_000.25
# (metric family name as parsed, sample name, labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def at(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


async def read(redis: Redis, keys: Keys, integrations: tuple[str, ...] = ()) -> Samples:
    figures = await FleetMetrics(redis, keys, integrations).read(NOW)
    return scrape(render(figures).decode())


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-metrics-{uuid.uuid4().hex[:8]}")


def ticking(start: float, step: float) -> Callable[[], float]:
    """A clock that moves `step` seconds at every reading."""
    readings = itertools.count()
    return lambda: start + step * next(readings)


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, 0.005),
        (0.005, 0.005),  # a bound holds what equals it (le)
        (0.0051, 0.01),
        (0.3, 0.5),
        (60.0, 60.0),
        (60.5, None),  # beyond the last bound: only the +Inf bucket, through the count
    ],
)
def test_latency_fields_name_one_bucket_the_count_and_the_sum(
    seconds: float, bucket: float | None
) -> None:
    expected = {"latency:custom:count": 1, "latency:custom:sum_us": round(seconds * 1e6)}
    if bucket is not None:
        expected[f"latency:custom:le:{bucket!r}"] = 1
    assert dict(latency_fields("custom", seconds)) == expected


async def test_an_empty_fleet_exports_every_family_with_zeros(redis: Redis, keys: Keys) -> None:
    samples = await read(redis, keys)

    assert at(samples, "tokenlife_schedule_depth") == 0
    assert at(samples, "tokenlife_schedule_lag_seconds") == 0
    assert named(samples, "tokenlife_connections") == {
        frozenset({("status", s.value)}): 0 for s in Status
    }
    assert named(samples, "tokenlife_alerts_total") == {
        frozenset({("type", t)}): 0 for t in SEVERITY
    }
    assert named(samples, "tokenlife_alert_deliveries_total") == {
        frozenset({("result", r)}): 0 for r in ("sent", "suppressed", "dead_lettered")
    }
    assert named(samples, "tokenlife_refreshes_total") == {}


async def test_a_host_whose_breaker_is_open_shows_until_a_probe_closes_it(
    redis: Redis, keys: Keys
) -> None:
    breakers, policy = ProviderBreakers(redis, keys), BreakerPolicy(min_failures=2)
    assert named(await read(redis, keys), "tokenlife_provider_degraded") == {}

    await breakers.record("idp.example:8443", NOW, policy, answered=0, probe_answered=0,
                          failures={"timeout": 2})  # fmt: skip
    assert named(await read(redis, keys), "tokenlife_provider_degraded") == {
        frozenset({("host", "idp.example:8443")}): 1
    }
    await breakers.record("idp.example:8443", NOW + 40, policy, answered=0, probe_answered=1,
                          failures={})  # fmt: skip
    assert named(await read(redis, keys), "tokenlife_provider_degraded") == {}


async def test_depth_counts_everything_and_lag_only_what_is_due_and_unclaimed(
    redis: Redis, keys: Keys
) -> None:
    schedule = RefreshSchedule(redis, keys)
    await put_on_schedule(redis, keys, "crm", "overdue-claimed", NOW - 30)
    claimed = await schedule.claim_due(lease_seconds=300, limit=100)  # by Redis's clock
    assert [d.connection_id for d in claimed] == ["overdue-claimed"]
    await put_on_schedule(redis, keys, "crm", "overdue", NOW - 10)
    await put_on_schedule(redis, keys, "crm", "later", NOW + 100)

    samples = await read(redis, keys)
    assert at(samples, "tokenlife_schedule_depth") == 3
    # The claimed one is leased into the future; the oldest unclaimed was due 10 s ago.
    assert at(samples, "tokenlife_schedule_lag_seconds") == pytest.approx(10)

    await schedule.reschedule("crm", "overdue", NOW + 5)  # refreshed: nothing due now
    assert at(await read(redis, keys), "tokenlife_schedule_lag_seconds") == 0


async def test_connections_by_status_of_the_configured_integrations(
    redis: Redis, keys: Keys, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_counts, "_PAGE", 2)  # a recount of several pages
    store = TokenStore(redis, keys, Cipher((Fernet.generate_key().decode(),)))
    wanted = {
        ("crm", Status.ACTIVE): 3,
        ("crm", Status.DEGRADED): 1,
        ("mail", Status.ACTIVE): 2,
        ("mail", Status.REAUTHORIZATION_REQUIRED): 2,
        ("unconfigured", Status.ACTIVE): 4,
    }
    for (integration, status), how_many in wanted.items():
        for _ in range(how_many):
            await save(store, integration, status)

    expected = {
        frozenset({("status", "active")}): 5,
        frozenset({("status", "degraded")}): 1,
        frozenset({("status", "reauthorization_required")}): 2,
    }
    # Counted as they were saved, then (as after an upgrade: the counts never whole)
    # counted afresh from the records by the first scrape.
    assert named(await read(redis, keys, ("crm", "mail")), "tokenlife_connections") == expected
    await redis.delete(*(keys.status_counts(shard) for shard in keys.all_shards))
    samples = await read(redis, keys, ("crm", "mail"))
    assert named(samples, "tokenlife_connections") == {
        frozenset({("status", "active")}): 5,
        frozenset({("status", "degraded")}): 1,
        frozenset({("status", "reauthorization_required")}): 2,
    }


async def test_counters_are_exported_as_refreshes_and_a_cumulative_histogram(
    redis: Redis, keys: Keys
) -> None:
    schedule = RefreshSchedule(redis, keys)
    totals = {"refresh:google:refreshed": 3, "refresh:custom:transient_failure": 1}
    for provider, seconds in [("google", 0.03), ("google", 0.2), ("google", 120.0)]:
        for name, amount in latency_fields(provider, seconds).items():
            totals[name] = totals.get(name, 0) + amount
    await schedule.count(totals, {}, NOW)
    await schedule.tick(NOW, claimed=4)  # "refresh:claimed" names no provider

    samples = await read(redis, keys)
    assert named(samples, "tokenlife_refreshes_total") == {
        frozenset({("provider", "google"), ("outcome", "refreshed")}): 3,
        frozenset({("provider", "custom"), ("outcome", "transient_failure")}): 1,
    }
    buckets = {
        float(dict(labels)["le"]): value
        for labels, value in named(samples, "tokenlife_refresh_duration_seconds_bucket").items()
    }
    assert buckets[0.025] == 0 and buckets[0.05] == 1 and buckets[0.25] == 2
    assert buckets[LATENCY_BUCKETS[-1]] == 2 and buckets[float("inf")] == 3
    assert at(samples, "tokenlife_refresh_duration_seconds_count", provider="google") == 3
    assert at(samples, "tokenlife_refresh_duration_seconds_sum", provider="google") == (
        pytest.approx(120.23)
    )


@dataclass
class Fleet:
    runtime: Runtime
    keys: Keys
    ok_path: str
    failing_path: str


@pytest.fixture
async def fleet(settings: Settings, fakes: Fakes) -> AsyncIterator[Fleet]:
    """A runtime of its own prefix, alerting to one webhook that works and one that fails."""
    tag = uuid.uuid4().hex[:8]
    ok_path, failing_path = f"/{tag}/ok", f"/{tag}/failing"
    fakes.receiver.script(failing_path, 500)
    configured = settings.model_copy(update={
        "key_prefix": f"{settings.key_prefix}-fleet-{tag}",
        "alert_webhook_urls": (fakes.receiver.base_url + ok_path,
                               fakes.receiver.base_url + failing_path),
        "alert_urls": (),
        "alert_retries": 1,
    })  # fmt: skip
    runtime = await Runtime.open(await load_config(configured))
    await runtime.alert_delivery().run_once(NOW)  # the consumer group: alerts from here on
    yield Fleet(runtime, runtime.keys, ok_path, failing_path)
    await runtime.close()


async def test_a_refresh_batch_and_a_delivery_run_show_up_in_one_scrape(fleet: Fleet) -> None:
    runtime = fleet.runtime
    # The fake knows no such refresh token: invalid_grant, so re-authorization is required
    # after one real token request. The other has no refresh token: an expiry check only.
    await save(runtime.tokens, "generic", Status.ACTIVE, due_at=NOW - 5)
    lapsing = await save(runtime.tokens, "generic", Status.DEGRADED, due_at=NOW - 5, refresh=False)
    for batch in await runtime.engine.claim_batches(lease_seconds=300, limit=100, batch_size=1):
        # One reading after the claim, one after the save: the refresh took one step.
        await runtime.engine.refresh_batch(batch, ticking(NOW, 0.2))
    for _ in range(2):  # the second one is within the dedup window: suppressed
        await runtime.events.emit(events.REFRESH_TOKEN_MISSING, "generic", lapsing, NOW)
    await runtime.events.emit(events.TOKEN_REFRESHED, "generic", lapsing, NOW)  # not an alert
    await runtime.alert_delivery().run_once(NOW)

    figures = await FleetMetrics(runtime.redis, fleet.keys, runtime.config.integrations).read(NOW)
    samples = scrape(render(figures).decode())

    assert named(samples, "tokenlife_refreshes_total") == {
        frozenset({("provider", "custom"), ("outcome", "reauthorization_required")}): 1,
        frozenset({("provider", "custom"), ("outcome", "alerted")}): 1,  # access token expiring
    }
    assert at(samples, "tokenlife_refresh_duration_seconds_count", provider="custom") == 1
    assert at(samples, "tokenlife_refresh_duration_seconds_sum", provider="custom") == (
        pytest.approx(0.2)
    )
    assert (
        at(samples, "tokenlife_refresh_duration_seconds_bucket", provider="custom", le="0.1") == 0
    )
    assert (
        at(samples, "tokenlife_refresh_duration_seconds_bucket", provider="custom", le="0.25") == 1
    )
    # Published by the store's Lua script and by EventStream.publish: counted alike.
    assert at(samples, "tokenlife_alerts_total", type=events.REAUTHORIZATION_REQUIRED) == 1
    assert at(samples, "tokenlife_alerts_total", type=events.ACCESS_TOKEN_EXPIRING) == 1
    assert at(samples, "tokenlife_alerts_total", type=events.REFRESH_TOKEN_MISSING) == 2
    assert at(samples, "tokenlife_alerts_total", type=events.REFRESH_FAILING) == 0
    # Three notifications (one per alert type), each to both webhooks.
    # The working target: re-authorization and the missing refresh token; the expiry
    # warning of the same connection, raised at the same moment, folds into the latter
    # (docs/alerts.md, one message per degraded connection) and counts as suppressed, as
    # does the second refresh_token_missing (the dedup window). The failing target got
    # nothing delivered, so nothing folds there: three dead letters.
    assert at(samples, "tokenlife_alert_deliveries_total", result="sent") == 2
    assert at(samples, "tokenlife_alert_deliveries_total", result="dead_lettered") == 3
    assert at(samples, "tokenlife_alert_deliveries_total", result="suppressed") == 2
    assert at(samples, "tokenlife_connections", status="reauthorization_required") == 1
    assert at(samples, "tokenlife_connections", status="degraded") == 1
    assert at(samples, "tokenlife_schedule_lag_seconds") == 0


async def test_the_handler_serves_the_text_format_and_503_without_redis(
    redis: Redis, keys: Keys
) -> None:
    await put_on_schedule(redis, keys, "crm", "c1", NOW)
    app = web.Application()
    app[METRICS] = FleetMetrics(redis, keys, ())
    app.router.add_get("/metrics", metrics)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert at(scrape(await response.text()), "tokenlife_schedule_depth") == 1

    # Nothing listens on port 1; no retries, so the refusal comes at once.
    nowhere = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    app = web.Application()
    app[METRICS] = FleetMetrics(nowhere, keys, ())
    app.router.add_get("/metrics", metrics)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 503
    await nowhere.aclose()


async def save(
    store: TokenStore,
    integration: str,
    status: Status,
    *,
    due_at: float | None = None,
    refresh: bool = True,
) -> str:
    connection_id = f"conn-{uuid.uuid4().hex[:12]}"
    await store.save(
        integration=integration,
        connection_id=connection_id,
        provider="custom",
        tokens=TokenSet(
            access_token="access-" + uuid.uuid4().hex,
            token_type="Bearer",
            refresh_token="refresh-" + uuid.uuid4().hex if refresh else None,
            expires_at=NOW + 3599,
            lifetime_seconds=3599,
            lifetime_source="expires_in",
            granted_scopes=("openid",),
        ),
        verdict=Verdict.REFRESHABLE if refresh else Verdict.REFRESH_TOKEN_MISSING,
        status=status,
        scopes_requested=("openid",),
        next_check_at=due_at,
        now=NOW - 60,
    )
    return connection_id
