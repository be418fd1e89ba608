"""Start-up: settings + integrations file + discovery become a Config; a Runtime holds
the clients (Redis, aiohttp) of one process, created on the loop that will use them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.connection_listing import ConnectionListing
from tokenlife.adapters.connection_scan import ConnectionScan
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.discovery import DiscoveryCache
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.exchange_store import ExchangeStore
from tokenlife.adapters.key_layout import KeyLayout, LayoutMismatch
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import Locks
from tokenlife.adapters.notifiers import AppriseTarget, Target, WebhookTarget
from tokenlife.adapters.outcome_counters import Counters
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.provider_breakers import ProviderBreakers
from tokenlife.adapters.redis_client import open_redis
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_store import TokenStore
from tokenlife.alert_config import AlertConfig, load_alert_config
from tokenlife.core.integration_registry import IntegrationRegistry
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset
from tokenlife.core.refresh_timing import RetryPolicy
from tokenlife.errors import ConfigurationError
from tokenlife.integration_discovery import (
    Discoverable,
    DiscoveryRetry,
    build_integration,
    discover_at_start,
)
from tokenlife.integrations import load_integrations_file
from tokenlife.providers import load_presets
from tokenlife.services.access import AccessTokens
from tokenlife.services.connection_admin import RefreshNow
from tokenlife.services.connections import ConnectionRemoval
from tokenlife.services.delivery import AlertDelivery, DeliveryPolicy
from tokenlife.services.durable_write import WriteRetry
from tokenlife.services.engine import RefreshEngine
from tokenlife.services.exchange import ExchangeService
from tokenlife.services.exchange_now import ExchangeNow
from tokenlife.services.expiry import ExpiryWatch
from tokenlife.services.provider_health import ProviderHealth
from tokenlife.services.refresh import Refresher
from tokenlife.services.scheduling import SchedulePolicy
from tokenlife.services.secret_expiry import ClientSecretWatch
from tokenlife.settings import Settings, require_encryption_keys

log = logging.getLogger(__name__)

# At shutdown, a refresh whose answer has arrived gets this long to be saved.
SHUTDOWN_SAVE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    settings: Settings
    presets: Mapping[str, Preset]
    integrations: IntegrationRegistry
    alerts: AlertConfig = field(default_factory=lambda: AlertConfig((), (), ()))


async def load_config(settings: Settings, environ: Mapping[str, str] | None = None) -> Config:
    """Everything that can be wrong in the configuration fails here, before any work.

    Except an issuer that does not answer: its integration starts from the cached discovery
    document, or unavailable, and the others work (see integration_discovery).
    """
    require_encryption_keys(settings)
    presets = load_presets()
    registry = IntegrationRegistry()
    if settings.integrations_file is not None:
        loaded = load_integrations_file(
            settings.integrations_file, presets, os.environ if environ is None else environ
        )
        wanted = []
        for name, (config, secret) in loaded.items():
            build = partial(
                build_integration, settings, name, config, presets[config.provider], secret
            )
            if config.issuer and not (config.authorize_url and config.token_url):
                wanted.append(Discoverable(name, config.issuer, build))
            else:
                registry.mark_available(build(None))
        if wanted:
            await discover_at_start(settings, registry, wanted, time.time())
    alerts = load_alert_config(settings, os.environ if environ is None else environ)
    return Config(settings=settings, presets=presets, integrations=registry, alerts=alerts)


class Runtime:
    """The clients of one process. Open it on the loop that will run the services."""

    def __init__(self, config: Config, redis: Redis, http: aiohttp.ClientSession) -> None:
        self.config = config
        self.redis = redis
        self.http = http
        self._discovery: DiscoveryRetry | None = None
        self._discovery_task: asyncio.Task[None] | None = None
        settings = config.settings
        keys = Keys(settings.key_prefix, settings.redis_shards)
        cipher = Cipher(require_encryption_keys(settings))
        self.keys = keys
        self.tokens = TokenStore(redis, keys, cipher, settings.events_max_length)
        # Every connection of some integrations, a page per round trip: the CLI's and the
        # API's listing and the dashboard walk the same way.
        self.scan = ConnectionScan(redis, keys)
        self.listing = ConnectionListing(redis, keys, cipher)
        self.schedule = RefreshSchedule(redis, keys)
        self.breakers = ProviderBreakers(redis, keys)
        # A claim's lock outlives one token request, however little the token has left.
        self.locks = Locks(redis, keys, lock_min_seconds=settings.http_timeout_seconds + 5)
        self.events = EventStream(redis, keys, settings.events_max_length)
        policy = SchedulePolicy(
            expiry_lead_seconds=[d * SECONDS_PER_DAY for d in settings.expiry_alert_lead_days]
        )
        # Client secrets that expire: warnings ahead (beat), one alert per integration after.
        self.secrets = ClientSecretWatch(redis, keys, self.events)
        self.exchange = ExchangeService(
            integrations=config.integrations,
            presets=config.presets,
            pending=PendingStore(redis, keys, cipher, settings.events_max_length),
            tokens=self.tokens,
            exchanges=ExchangeStore(redis, keys, cipher, settings.events_max_length),
            http=http,
            http_timeout=settings.http_timeout_seconds,
            schedule_policy=policy,
            save_retry_seconds=settings.exchange_save_retry_seconds,
            counters=Counters(redis, keys),
            secrets=self.secrets,
        )
        # The exchange task's work in this process (the library's exchange_callback), its
        # retries bounded by the time a user waits on a callback page.
        self.exchange_now = ExchangeNow(
            exchange=self.exchange, max_retries=settings.exchange_max_retries,
            retry_base_seconds=settings.exchange_retry_base_seconds,
            retry_max_seconds=settings.exchange_retry_max_seconds,
            wait_seconds=settings.api_callback_wait_seconds,
        )  # fmt: skip
        refresher = Refresher(
            presets=config.presets,
            store=self.tokens,
            events_=self.events,
            http=http,
            http_timeout=settings.http_timeout_seconds,
            retry=RetryPolicy(
                base_seconds=settings.refresh_retry_base_seconds,
                max_seconds=settings.refresh_retry_max_seconds,
                max_attempts_per_hour=settings.refresh_max_attempts_per_hour,
            ),
            schedule_policy=policy,
            locks=self.locks,
            schedule=self.schedule,
            save_retry=WriteRetry(seconds=settings.refresh_save_retry_seconds),
            secrets=self.secrets,
        )
        self.refresher = refresher
        self.engine = RefreshEngine(
            integrations=config.integrations,
            store=self.tokens,
            schedule=self.schedule,
            locks=self.locks,
            refresher=refresher,
            expiry=ExpiryWatch(store=self.tokens, lead_seconds=policy.expiry_lead_seconds),
            provider_concurrency=settings.provider_concurrency,
            # A provider outage: one alert, refreshes held, one probe at a time.
            health=ProviderHealth(
                breakers=self.breakers,
                events_=self.events,
                integrations=config.integrations,
                policy=settings.breaker_policy,
            ),
        )
        self.removal = ConnectionRemoval(
            integrations=config.integrations,
            store=self.tokens,
            locks=self.locks,
            # A refresh in progress takes at most one token request and its save.
            lock_wait_seconds=settings.http_timeout_seconds + 5,
            events_=self.events,
            http=http,
            http_timeout=settings.http_timeout_seconds,
        )
        # Due or not, in this process, single-flight with the worker: the CLI's refresh and
        # the library's.
        self.refresh_now = RefreshNow(
            integrations=config.integrations, store=self.tokens, locks=self.locks,
            refresher=refresher, provider_concurrency=settings.provider_concurrency,
            wait_seconds=settings.http_timeout_seconds + 5,
        )  # fmt: skip
        self.connect_sessions = ConnectSessions(redis, keys, settings.connect_session_ttl_seconds)
        self.access = AccessTokens(
            integrations=config.integrations,
            store=self.tokens,
            locks=self.locks,
            refresher=refresher,
            leeway=settings.access_token_leeway_seconds,
            wait_seconds=settings.api_token_wait_seconds,
            provider_concurrency=settings.provider_concurrency,
            counters=Counters(redis, keys),
        )

    @classmethod
    async def open(cls, config: Config) -> Runtime:
        settings = config.settings
        redis = open_redis(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            wait_seconds=settings.http_timeout_seconds + 10,
            health_check_seconds=settings.redis_health_check_seconds,
            retries=settings.redis_retries,
        )
        await _check_layout(redis, Keys(settings.key_prefix, settings.redis_shards))
        http = aiohttp.ClientSession(headers={"User-Agent": "tokenlife"})
        runtime = cls(config, redis, http)
        runtime.start_discovery_retry()
        return runtime

    def start_discovery_retry(self) -> None:
        """Retry unavailable (and stale: built from a cached document) integrations'
        discovery in the background on this process's loop.

        In a worker process the loop runs only while a task runs; the retry makes progress
        then, which is when the integrations are needed.
        """
        if not self.config.integrations.awaiting_discovery or self._discovery_task is not None:
            return
        self._discovery = retry = DiscoveryRetry(
            self.config.integrations, session=self.http,
            cache=DiscoveryCache(self.redis, self.keys), stream=self.events,
            timeout=self.config.settings.http_timeout_seconds,
            retry_seconds=self.config.settings.discovery_retry_seconds,
        )  # fmt: skip
        self._discovery_task = asyncio.get_running_loop().create_task(retry.run())

    async def adopt_cached_discovery(self) -> None:
        """Make integrations available whose document another process has cached since."""
        if self._discovery is not None and self.config.integrations.awaiting_discovery:
            await self._discovery.adopt_cached()

    def alert_delivery(self) -> AlertDelivery:
        settings = self.config.settings
        targets: dict[str, Target] = {}
        for spec in self.config.alerts.targets:
            if spec.kind == "apprise":
                targets[spec.name] = AppriseTarget(spec.name, spec.url)
            else:
                secret = (spec.secret or "").encode()
                targets[spec.name] = WebhookTarget(
                    spec.name, spec.url, secret, self.http, settings.http_timeout_seconds
                )
        return AlertDelivery(
            redis=self.redis,
            keys=self.keys,
            targets=targets,
            routes=self.config.alerts.routes,
            default_targets=self.config.alerts.default_targets,
            policy=DeliveryPolicy(
                dedup_window_seconds=settings.alert_dedup_window_hours * 3600,
                retries=settings.alert_retries,
                retry_base_seconds=settings.alert_retry_base_seconds,
                claim_idle_seconds=settings.alert_claim_idle_seconds,
                docs_url=settings.docs_url,
            ),
            consumer=f"{socket.gethostname()}-{os.getpid()}",
        )

    @property
    def shutdown_seconds(self) -> float:
        return shutdown_seconds(self.config.settings)

    async def close(self) -> None:
        """Let refreshes already sent, and exchanges run in this process, finish and be
        saved (each bounded by shutdown_seconds), then close the clients under them."""
        bound = self.shutdown_seconds
        if not await self.refresher.wait_running(bound):
            log.error("closing with refreshes still running after %.0f s; a rotated refresh "
                      "token may be lost", bound)  # fmt: skip
        if not await self.exchange_now.wait_running(bound):
            log.error("closing with code exchanges still running after %.0f s; their users "
                      "may have to connect again", bound)  # fmt: skip
        await self.access.wait_background(SHUTDOWN_SAVE_SECONDS)
        if self._discovery_task is not None:
            self._discovery_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._discovery_task
        await self.http.close()
        await self.redis.aclose()


def shutdown_seconds(settings: Settings) -> float:
    """How long close() waits for refreshes in flight: one token request and a few seconds
    of saving. A save still waiting for Redis past that is abandoned (the alternative, the
    full save-retry time, would hold a shutdown for minutes)."""
    return settings.http_timeout_seconds + SHUTDOWN_SAVE_SECONDS


def close_seconds(settings: Settings) -> float:
    """The longest Runtime.close() waits: refreshes, then exchanges (shutdown_seconds
    each), then the token path's background saves."""
    return 2 * shutdown_seconds(settings) + SHUTDOWN_SAVE_SECONDS


async def _check_layout(redis: Redis, keys: Keys) -> None:
    """Refuse to start on keys laid out otherwise (adapters/key_layout.py); a Redis that
    can't be reached now is the worker's to ride out, so that only skips the check."""
    try:
        await KeyLayout(redis, keys).check()
    except LayoutMismatch as exc:
        await redis.aclose()
        raise ConfigurationError(str(exc)) from None
    except RedisError:
        log.warning("could not check how the keys are laid out (Redis unavailable); "
                    "checked again at the next start")  # fmt: skip
