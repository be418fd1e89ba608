"""`tokenlife integrations check`: load every integration leniently, fetch discovery
documents, and run the pure checks; one integration's mistake never hides another's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from tokenlife.adapters.discovery import endpoints_from, fetch_discovery_document
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import connect
from tokenlife.core import events
from tokenlife.core.preflight import Finding, check_integration
from tokenlife.core.presets import Preset
from tokenlife.errors import ConfigurationError
from tokenlife.integrations import default_timing, read_tables, resolve, validate_table
from tokenlife.settings import Settings


async def preflight(
    settings: Settings,
    presets: Mapping[str, Preset],
    environ: Mapping[str, str],
    session: aiohttp.ClientSession,
    now: float | None = None,
) -> list[Finding]:
    """Every integration's findings; `now` (when given) checks client secrets' expiry."""
    if settings.integrations_file is None:
        return []
    path = settings.integrations_file
    try:
        tables = read_tables(path)
    except ConfigurationError as exc:
        return [Finding("*", "error", "invalid_file", str(exc), "Fix the integrations file.")]
    findings: list[Finding] = []
    for name, table in tables.items():
        findings += await _check_one(name, table, settings, presets, environ, session, now)
    return findings


async def _check_one(
    name: str,
    table: Any,
    settings: Settings,
    presets: Mapping[str, Preset],
    environ: Mapping[str, str],
    session: aiohttp.ClientSession,
    now: float | None,
) -> list[Finding]:
    where = f"[integrations.{name}]"
    try:
        config = validate_table(name, table, presets, where)
    except ConfigurationError as exc:
        return [Finding(name, "error", "invalid_configuration", str(exc), "Fix the table.")]
    findings = []
    if config.client_secret_env is not None and not environ.get(config.client_secret_env):
        findings.append(Finding(
            name, "error", "client_secret_env_unset",
            f"client_secret_env names {config.client_secret_env}, which is unset or empty.",
            f"Set {config.client_secret_env} in the worker's environment.",
        ))  # fmt: skip
    document = None
    discovered = None
    if config.issuer is not None:
        try:
            document = await fetch_discovery_document(
                session, config.issuer, settings.http_timeout_seconds
            )
            if not (config.authorize_url and config.token_url):
                discovered = endpoints_from(config.issuer, document)
        except ConfigurationError as exc:
            fix = "Check the issuer URL and that the server is up."
            return [*findings, Finding(name, "error", "discovery_failed", str(exc), fix)]
    try:
        integration = resolve(
            name, config, presets[config.provider], None,
            settings.minimum_access_token_only_lifetime_days, discovered,
            default_timing(settings),
        )  # fmt: skip
    except ConfigurationError as exc:
        return [*findings, Finding(name, "error", "invalid_configuration", str(exc),
                                   "Fix the table.")]  # fmt: skip
    default = settings.minimum_access_token_only_lifetime_days
    return [*findings, *check_integration(integration, presets, document, default, now)]


# Findings beat alerts about itself: raised at every worker start too, they would page again
# for what on-call was told once.
ALERTED_BY_BEAT = frozenset({"client_secret_expiring"})


async def report_at_start(
    settings: Settings, presets: Mapping[str, Preset], environ: Mapping[str, str], now: float
) -> list[Finding]:
    """The worker's start-up preflight: every finding becomes an `alert.configuration`,
    but for those beat alerts about on its own (a client secret expiring: its
    alert.client_secret_expiring, once per lead), which are only returned (and logged)."""
    async with aiohttp.ClientSession() as session:
        findings = await preflight(settings, presets, environ, session, now)
    redis = connect(settings.redis_url)
    try:
        stream = EventStream(
            redis, Keys(settings.key_prefix, settings.redis_shards), settings.events_max_length
        )
        for finding in findings:
            if finding.code in ALERTED_BY_BEAT:
                continue
            await stream.emit(
                events.CONFIGURATION, finding.integration, None, now,
                severity=finding.severity, code=finding.code, message=finding.message,
                fix=finding.fix, source=finding.source,
            )  # fmt: skip
    finally:
        await redis.aclose()
    return findings
