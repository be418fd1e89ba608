"""GET /metrics: the whole fleet in the Prometheus text format, from any API process.

Workers and beat write their figures to Redis; a scrape reads them (adapters/fleet_metrics)
and a collector turns them into metric families, in a registry made for that scrape: no
process-global registry, no multiprocess files. The metrics are listed in docs/metrics.md.

Wiring, in create_app (the handler takes its reader from the app, not from a global):

    app[METRICS] = FleetMetrics(runtime.redis, runtime.keys, integrations, providers)
    app.router.add_get("/metrics", metrics)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.exceptions import RedisError

from tokenlife.adapters.fleet_metrics import FleetFigures, FleetMetrics, Latency
from tokenlife.adapters.status_counts import CountsIncomplete

log = logging.getLogger(__name__)
METRICS = web.AppKey("fleet_metrics", FleetMetrics)


async def metrics(request: web.Request) -> web.Response:
    try:
        figures = await request.app[METRICS].read(time.time())
    except RedisError as exc:
        # A failed scrape is what Prometheus should see (up == 0), not zeros.
        log.warning("metrics: Redis: %s", exc)
        return web.Response(status=503, text="Redis is unavailable\n")
    except CountsIncomplete as exc:
        # Not counts that are only partly there: the scrape fails until they are whole.
        return web.Response(status=503, text=f"{exc}\n")
    return web.Response(body=render(figures), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def render(figures: FleetFigures) -> bytes:
    """The text exposition of one scrape's figures, through a registry of its own."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(figures))
    return generate_latest(registry)


class FleetCollector:
    """A prometheus_client collector over figures already read (collect() can't await)."""

    def __init__(self, figures: FleetFigures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures
        refreshes = CounterMetricFamily(
            "tokenlife_refreshes",
            "Scheduled refreshes by provider and outcome.",
            labels=["provider", "outcome"],
        )
        for (provider, outcome), value in sorted(figures.refreshes.items()):
            refreshes.add_metric([provider, outcome], value)
        yield refreshes

        duration = HistogramMetricFamily(
            "tokenlife_refresh_duration_seconds",
            "Time of a scheduled refresh's token request and the save of its result.",
            labels=["provider"],
        )
        for provider, latency in sorted(figures.latency.items()):
            buckets = [(repr(bound), float(count)) for bound, count in latency.cumulative]
            buckets.append(("+Inf", float(latency.count)))
            duration.add_metric([provider], buckets, latency.sum_seconds)
        yield duration
        yield from _exchanges_and_on_demand(figures)

        yield GaugeMetricFamily(
            "tokenlife_schedule_depth",
            "Connections on the refresh schedule, due or not.",
            value=figures.schedule_depth,
        )
        yield GaugeMetricFamily(
            "tokenlife_schedule_lag_seconds",
            "How long the longest-waiting due connection has gone unclaimed; 0 when none is.",
            value=figures.schedule_lag_seconds,
        )

        alerts = CounterMetricFamily(
            "tokenlife_alerts", "Alert events by type, as delivery read them.", labels=["type"]
        )
        for kind, value in sorted(figures.alerts.items()):
            alerts.add_metric([kind], value)
        yield alerts

        deliveries = CounterMetricFamily(
            "tokenlife_alert_deliveries",
            "Alert notifications by result: sent, suppressed (dedup window), dead_lettered.",
            labels=["result"],
        )
        for result, value in sorted(figures.deliveries.items()):
            deliveries.add_metric([result], value)
        yield deliveries

        degraded = GaugeMetricFamily(
            "tokenlife_provider_degraded",
            "1 for each provider host whose circuit breaker is open (its scheduled refreshes "
            "are held); no series for a host that answers.",
            labels=["host"],
        )
        for host in figures.degraded_hosts:
            degraded.add_metric([host], 1)
        yield degraded

        connections = GaugeMetricFamily(
            "tokenlife_connections", "Connections by status.", labels=["status"]
        )
        for status, value in sorted(figures.connections.items()):
            connections.add_metric([status], value)
        yield connections


def _exchanges_and_on_demand(figures: FleetFigures) -> Iterator[Metric]:
    exchanges = CounterMetricFamily(
        "tokenlife_exchanges",
        "Code exchanges by provider and how they ended; `reason` is a failed one's error.",
        labels=["provider", "outcome", "reason"],
    )
    for series, value in sorted(figures.exchanges.items()):
        exchanges.add_metric(list(series), value)
    yield exchanges

    on_demand = CounterMetricFamily(
        "tokenlife_on_demand_refreshes",
        "Refreshes a token request made (POST /token, get_access_token), by outcome.",
        labels=["provider", "outcome"],
    )
    for pair, value in sorted(figures.on_demand.items()):
        on_demand.add_metric(list(pair), value)
    yield on_demand
    yield _histogram(
        "tokenlife_on_demand_refresh_duration_seconds",
        "Time of an on-demand refresh's token request and the save of its result.",
        figures.on_demand_latency,
    )


def _histogram(name: str, documentation: str, latency: Mapping[str, Latency]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["provider"])
    for provider, histogram in sorted(latency.items()):
        buckets = [(repr(bound), float(count)) for bound, count in histogram.cumulative]
        buckets.append(("+Inf", float(histogram.count)))
        family.add_metric([provider], buckets, histogram.sum_seconds)
    return family
