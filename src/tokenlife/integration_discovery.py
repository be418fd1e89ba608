"""Integrations whose endpoints come from OIDC Discovery, and what happens when the issuer
does not answer (issue 9 §5).

One vendor's outage must not stop token service for every other integration, so a failed
discovery never stops a process: the integration starts from the last good document
cached in Redis (a warning), or is *unavailable* (an error event, readiness says so). A
background retry fetches the document until it succeeds (`DiscoveryRetry`), for a cached
start too: the provider may have moved an endpoint or its revocation endpoint since, or
started sending RFC 9207 `iss`, and the live document rebuilds the integration.

A start does not ask the issuer at all while the document it fetched last is fresh by the
issuer's caching headers (adapters/discovery.freshness_seconds): this process's copy, else
Redis's, which every process of the deployment shares. An app that opens a `Tokenlife`
per request asks the issuer once per freshness lifetime, not once per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from tokenlife.adapters.discovery import (
    CachedDocument,
    DiscoveryCache,
    endpoints_from,
    fetch_discovery,
    introspection_endpoint_from,
    prompt_values_from,
    requires_iss,
    revocation_endpoint_from,
)
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import open_redis
from tokenlife.core import events
from tokenlife.core.integration import Integration
from tokenlife.core.integration_registry import IntegrationRegistry, Unavailable
from tokenlife.core.presets import Preset
from tokenlife.errors import ConfigurationError
from tokenlife.integrations import IntegrationConfig, default_timing, resolve
from tokenlife.settings import Settings

log = logging.getLogger(__name__)

ISSUER_DOWN_FIX = (
    "Check that the issuer is up and reachable from tokenlife, and that `issuer` is its exact "
    "URL (a trailing slash counts); nothing needs restarting: the retry picks it up."
)

Build = Callable[[Mapping[str, Any]], Integration]


@dataclass(frozen=True, slots=True)
class Discoverable:
    name: str
    issuer: str
    build: Build  # the integration from a discovery document; ConfigurationError if unusable


def build_integration(
    settings: Settings,
    name: str,
    config: IntegrationConfig,
    preset: Preset,
    secret: str | None,
    document: Mapping[str, Any] | None,
) -> Integration:
    """The integration, its endpoints (and revocation endpoint) from `document` if any."""
    discovered = None
    if document is not None and config.issuer is not None:
        discovered = endpoints_from(config.issuer, document)
    integration = resolve(
        name, config, preset, secret, settings.minimum_access_token_only_lifetime_days,
        discovered, default_timing(settings),
        require_iss=document is not None and requires_iss(document),
        discovered_revocation_url=None if document is None else revocation_endpoint_from(document),
    )  # fmt: skip
    if document is None:
        return integration
    # The integrations file's URL, else the issuer's own (the catalogue's may belong to
    # another authorization server: Okta's org server answers "inactive" for a custom
    # server's tokens), else the catalogue's.
    discovered_introspection = None
    if config.introspection_url is None and config.issuer is not None:
        discovered_introspection = introspection_endpoint_from(
            document, config.issuer, integration.token_url
        )
    return replace(
        integration,
        prompt_values_supported=prompt_values_from(document),
        introspection_url=discovered_introspection or integration.introspection_url,
    )


# Fresh documents this process has fetched or read, by issuer: the next start in this
# process needs neither the issuer nor Redis. Public metadata; a fork inherits it as is.
_fresh_in_process: dict[str, CachedDocument] = {}


def _remember(issuer: str, cached: CachedDocument, now: float) -> None:
    if cached.fresh(now):
        _fresh_in_process[issuer] = cached


def _fresh_build(
    item: Discoverable, cached: CachedDocument | None, now: float
) -> Integration | None:
    """The integration from a document still fresh at `now`; None to fetch it instead."""
    if cached is None or not cached.fresh(now):
        return None
    try:
        return item.build(cached.document)
    except ConfigurationError:
        return None  # it no longer resolves (the integrations file changed): fetch


async def discover_at_start(
    settings: Settings, registry: IntegrationRegistry, wanted: list[Discoverable], now: float
) -> None:
    """Fetch every document that is not fresh in this process or in Redis, all at once (a
    hung issuer costs one timeout, not one each)."""
    left = []
    for item in wanted:
        integration = _fresh_build(item, _fresh_in_process.get(item.issuer), now)
        if integration is None:
            left.append(item)
        else:
            registry.mark_available(integration)
    if not left:
        return
    redis = open_redis(
        settings.redis_url, max_connections=4, wait_seconds=10,
        health_check_seconds=settings.redis_health_check_seconds,
        retries=settings.redis_retries,
    )  # fmt: skip
    keys = Keys(settings.key_prefix, settings.redis_shards)
    cache = DiscoveryCache(redis, keys)
    stream = EventStream(redis, keys, settings.events_max_length)
    timeout, retry_seconds = settings.http_timeout_seconds, settings.discovery_retry_seconds
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(
                _discover_one(registry, item, session, cache, stream, timeout, retry_seconds, now)
                for item in left
            ))  # fmt: skip
    finally:
        await redis.aclose()


async def _discover_one(
    registry: IntegrationRegistry,
    item: Discoverable,
    session: aiohttp.ClientSession,
    cache: DiscoveryCache,
    stream: EventStream,
    timeout: float,
    retry_seconds: float,
    now: float,
) -> None:
    cached = await cache.get(item.issuer)
    integration = _fresh_build(item, cached, now)
    if integration is not None:
        assert cached is not None
        registry.mark_available(integration)
        _remember(item.issuer, cached, now)
        return
    try:
        fetched = await fetch_discovery(session, item.issuer, timeout, now)
        registry.mark_available(item.build(fetched.document))
    except ConfigurationError as exc:
        failure = str(exc)
    else:
        await cache.put(item.issuer, fetched.document, now, fetched.fresh_until)
        _remember(item.issuer, CachedDocument(fetched.document, now, fetched.fresh_until), now)
        return
    if cached is not None:
        try:
            registry.mark_available(item.build(cached.document))
        except ConfigurationError:
            pass  # a cached document that no longer resolves: unavailable below
        else:
            entry = Unavailable(item.name, item.issuer, failure, now, now, now + retry_seconds,
                                item.build, cached.document)  # fmt: skip
            registry.mark_stale(registry[item.name], entry)
            message = (
                f"{failure}; started from the discovery document cached "
                f"{events.iso8601(cached.fetched_at)}; the live document is fetched again "
                f"every {retry_seconds:g} s until it answers"
            )
            log.warning("integration %s: %s", item.name, message)
            await _emit(stream, item.name, now, "warning", "discovery_cached", message)
            return
    registry.mark_unavailable(
        Unavailable(item.name, item.issuer, failure, now, now, now + retry_seconds, item.build)
    )
    message = (
        f"{failure}; integration {item.name} is unavailable until discovery succeeds "
        f"(retried every {retry_seconds:g} s); other integrations are not affected"
    )
    log.error("integration %s: %s", item.name, message)
    await _emit(stream, item.name, now, "error", "integration_unavailable", message)


class DiscoveryRetry:
    """Fetches the documents of unavailable and stale integrations until each succeeds.

    Another process may have fetched a document since this one failed: a newer cached
    document is taken without asking the issuer again.
    """

    def __init__(
        self,
        registry: IntegrationRegistry,
        *,
        session: aiohttp.ClientSession,
        cache: DiscoveryCache,
        stream: EventStream,
        timeout: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._session = session
        self._cache = cache
        self._stream = stream
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._clock = clock

    async def run(self) -> None:
        """Until every integration is available; errors are logged, never raised."""
        while self._registry.awaiting_discovery:
            now = self._clock()
            try:
                await self.retry_due(now)
            except Exception:
                # Nothing moved on (an unexpected error): wait a whole period rather than
                # spin on the nearest next_try_at.
                log.exception("discovery retry failed")
                await asyncio.sleep(self._retry_seconds)
                continue
            pending = [*self._registry.unavailable.values(), *self._registry.stale.values()]
            if pending:
                wait = min(e.next_try_at for e in pending) - self._clock()
                await asyncio.sleep(min(max(wait, 0.05), self._retry_seconds))

    async def retry_due(self, now: float) -> list[str]:
        """Try each unavailable integration whose time has come; the names now available."""
        due = [e for e in self._registry.unavailable.values() if e.next_try_at <= now]
        stale = [e for e in self._registry.stale.values() if e.next_try_at <= now]
        results = await asyncio.gather(
            *(self._retry(entry, now) for entry in due),
            *(self._refresh(entry, now) for entry in stale),
        )
        return [entry.name for entry, ok in zip(due + stale, results, strict=True) if ok]

    async def adopt_cached(self) -> None:
        """Take documents another process fetched since; no request to any issuer. Cheap
        enough to run before every task of a worker process while one is unavailable."""
        for entry in [*self._registry.unavailable.values(), *self._registry.stale.values()]:
            await self._adopt(entry)

    async def _adopt(self, entry: Unavailable) -> bool:
        cached = await self._cache.get(entry.issuer)
        if cached is None or cached.fetched_at < entry.since:
            return False
        try:
            self._registry.mark_available(entry.resolve(cached.document))
        except ConfigurationError:
            return False
        log.warning("integration %s: available (discovery document cached by another "
                    "process)", entry.name)  # fmt: skip
        return True

    async def _refresh(self, entry: Unavailable, now: float) -> bool:
        """A stale integration: the live document, and a rebuild when it changed."""
        if await self._adopt(entry):
            return True
        try:
            fetched = await fetch_discovery(self._session, entry.issuer, self._timeout, now)
            document = fetched.document
            integration = None if document == entry.cached else entry.resolve(document)
        except ConfigurationError as exc:
            if entry.name in self._registry:
                self._registry.mark_stale(self._registry[entry.name], replace(
                    entry, reason=str(exc), last_tried_at=now,
                    next_try_at=now + self._retry_seconds,
                ))  # fmt: skip
            log.warning("integration %s: still on its cached discovery document: %s",
                        entry.name, exc)  # fmt: skip
            return False
        await self._cache.put(entry.issuer, document, now, fetched.fresh_until)
        if integration is None:
            self._registry.mark_fresh(entry.name)
            log.warning("integration %s: live discovery document fetched; unchanged", entry.name)
        else:
            self._registry.mark_available(integration)
            log.warning("integration %s: live discovery document differs from the cached "
                        "one; rebuilt from it", entry.name)  # fmt: skip
        return True

    async def _retry(self, entry: Unavailable, now: float) -> bool:
        if await self._adopt(entry):
            return True
        try:
            fetched = await fetch_discovery(self._session, entry.issuer, self._timeout, now)
            integration = entry.resolve(fetched.document)
        except ConfigurationError as exc:
            self._registry.mark_unavailable(
                replace(entry, reason=str(exc), last_tried_at=now,
                        next_try_at=now + self._retry_seconds)
            )  # fmt: skip
            log.warning("integration %s: still unavailable: %s", entry.name, exc)
            return False
        await self._cache.put(entry.issuer, fetched.document, now, fetched.fresh_until)
        self._registry.mark_available(integration)
        log.warning("integration %s: discovery succeeded; available again", entry.name)
        try:
            await self._stream.emit(
                events.INTEGRATION_AVAILABLE, entry.name, None, now,
                issuer=entry.issuer, unavailable_since=events.iso8601(entry.since),
            )  # fmt: skip
        except Exception as exc:
            log.warning("could not emit %s: %s", events.INTEGRATION_AVAILABLE, exc)
        return True


async def _emit(
    stream: EventStream, name: str, now: float, severity: str, code: str, message: str
) -> None:
    try:
        await stream.emit(
            events.CONFIGURATION, name, None, now, severity=severity, code=code,
            message=message, fix=ISSUER_DOWN_FIX, source="OpenID Connect Discovery 1.0 §4",
        )  # fmt: skip
    except Exception as exc:  # Redis down too: the log line above still says it
        log.warning("could not emit alert.configuration for %s: %s", name, exc)
