"""Settings from `TOKENLIFE_*` environment variables and an optional `.env` file.

Built only in entry points (worker start, CLI), then passed down as narrow pieces.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tokenlife.adapters.keys import DEFAULT_SHARDS, MAX_SHARDS
from tokenlife.core.provider_breaker import BreakerPolicy
from tokenlife.core.redis_topology import Topology, parse_redis_url
from tokenlife.core.service_urls import REDIS_SCHEMES, check_url
from tokenlife.development import STATE_DIR, find_development_key, read_development_key
from tokenlife.errors import ConfigurationError

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENLIFE_", env_file=".env", extra="ignore", frozen=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None  # defaults to redis_url
    key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "tokenlife"
    # Connections are spread over this many shards, each a hash tag of its own (so a Redis
    # Cluster can hold them) with its own schedule and event stream (adapters/keys.py).
    # Fixed for a deployment: `tokenlife connections reshard` moves them to another count.
    redis_shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = DEFAULT_SHARDS
    minimum_access_token_only_lifetime_days: Annotated[float, Field(gt=0, le=3650)] = 30
    encryption_keys: Annotated[tuple[str, ...], NoDecode] = ()
    integrations_file: Path | None = None

    http_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    redis_max_connections: Annotated[int, Field(ge=2, le=10_000)] = 64
    # A pooled connection idle this long is PINGed before use, so one Redis restart does
    # not fail the first request on a stale socket; 0 turns the check off.
    redis_health_check_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # A command that fails on a connection error is retried this often with backoff.
    redis_retries: Annotated[int, Field(ge=0, le=20)] = 5
    # An integration whose discovery failed at start is retried this often.
    discovery_retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    exchange_max_retries: Annotated[int, Field(ge=0, le=20)] = 5
    exchange_retry_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 2.0
    exchange_retry_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 120.0
    # How long an exchange keeps retrying to save the tokens it got while Redis is down;
    # a user is waiting on the callback page, and the code can't be sent twice.
    exchange_save_retry_seconds: Annotated[float, Field(ge=0, le=600)] = 20.0
    events_max_length: Annotated[int, Field(ge=1000)] = 100_000

    refresh_margin_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
    refresh_margin_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2
    refresh_unknown_lifetime_seconds: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600.0
    refresh_due_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    refresh_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    refresh_claim_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    refresh_lease_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
    refresh_retry_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    refresh_retry_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 900.0
    refresh_max_attempts_per_hour: Annotated[int, Field(ge=1, le=3600)] = 10
    # How long a worker keeps retrying the save of tokens a provider just issued while
    # Redis is unavailable (a rotated refresh token exists only in memory until then).
    refresh_save_retry_seconds: Annotated[float, Field(ge=0, le=86400)] = 600.0
    provider_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 50
    # A provider host's circuit breaker (core/provider_breaker.py): it opens when this many
    # transient failures (0: never) making this share of the outcomes fall in the window.
    breaker_min_failures: Annotated[int, Field(ge=0, le=1_000_000)] = 20
    breaker_failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    breaker_window_seconds: Annotated[float, Field(ge=1, le=3600)] = 60.0
    # Open: one scheduled refresh probes the host this often; the others wait this long
    # (to twice it, jittered) unless a probe's answer brings them back first, at this rate.
    breaker_probe_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    breaker_pause_seconds: Annotated[float, Field(ge=1, le=86400)] = 600.0
    breaker_recovery_rate: Annotated[float, Field(gt=0, le=100_000)] = 50.0
    expiry_alert_lead_days: Annotated[tuple[float, ...], NoDecode] = (7.0, 1.0)
    access_token_leeway_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0

    alert_urls: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    alert_webhook_urls: Annotated[tuple[str, ...], NoDecode] = ()
    alert_webhook_secret: str | None = Field(default=None, repr=False)
    alert_dedup_window_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 6.0
    alert_retries: Annotated[int, Field(ge=0, le=10)] = 3
    alert_retry_base_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    alert_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 2.0
    alert_claim_idle_seconds: Annotated[float, Field(ge=0, le=86400)] = 60.0
    # The troubleshooting page notifications link to (absolute: a message is read far from
    # the repository). The project publishes no docs site, so there is no default to link.
    docs_url: str = ""

    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    api_max_body_bytes: Annotated[int, Field(ge=1024, le=10 * 1024 * 1024)] = 64 * 1024
    # `return_to` of the connect flow must start with one of these (no open redirects).
    api_return_to_allowed: Annotated[tuple[str, ...], NoDecode] = ()
    # How long the link of a connect session (POST /api/connect-sessions) can be used.
    connect_session_ttl_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 1800
    api_callback_wait_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0
    # No request holds a connection longer: a hung provider ends in a 504, not a pile-up.
    api_request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    # An access-token call answers within this long (a token, or 503 with Retry-After),
    # below the 10 s timeout of the documented client example.
    api_token_wait_seconds: Annotated[float, Field(gt=0, le=300)] = 8.0
    # Logs (docs/logging.md): `auto` is JSON lines unless the log stream is a terminal;
    # no level means the one the command was started with (Celery's --loglevel, else INFO).
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None
    # Beat's tick runs are counted and logged as one INFO line per this period.
    log_summary_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0

    @field_validator(
        "encryption_keys", "expiry_alert_lead_days", "alert_urls", "alert_webhook_urls",
        "api_keys", "api_return_to_allowed",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("docs_url")
    @classmethod
    def _check_docs_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(
                f"{value!r} is not an absolute http(s) URL; notifications are "
                "read outside the repository, where a relative link leads nowhere"
            )
        return value.split("#", 1)[0]

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked here so a bad URL is one line naming the setting, never a traceback
        # from redis-py or kombu that quotes part of the password (core/service_urls.py).
        if value is None:
            return None
        return check_url(value, REDIS_SCHEMES if info.field_name == "redis_url" else None)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_case(cls, value: object) -> object:
        # TOKENLIFE_LOG_LEVEL=info works like INFO; an empty value means unset.
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_case(cls, value: object) -> object:
        return value.strip().lower() or "auto" if isinstance(value, str) else value

    @field_validator("encryption_keys")
    @classmethod
    def _valid_fernet_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                # Never echo the key itself.
                raise ValueError(
                    f"key #{position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "check that it was copied whole: stored tokens decrypt only with the "
                    "exact key that encrypted them"
                ) from None
        return keys

    @field_validator("expiry_alert_lead_days")
    @classmethod
    def _positive_leads(cls, leads: tuple[float, ...]) -> tuple[float, ...]:
        if any(lead <= 0 for lead in leads):
            raise ValueError("lead times must be positive numbers of days")
        return tuple(sorted(set(leads), reverse=True))

    @field_validator("integrations_file")
    @classmethod
    def _file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} does not exist or is not a file")
        return path

    @model_validator(mode="after")
    def _broker_beside_a_cluster(self) -> Settings:
        # Celery's Redis transport and result backend speak to one server: a Redis Cluster
        # (or our Sentinel URL form) can hold tokenlife's data but not Celery's queues.
        if self.broker_url is None and not _standalone(self.redis_url):
            raise ValueError(
                "TOKENLIFE_REDIS_URL names a Redis Cluster or a Sentinel, which Celery's "
                "broker can't use: set TOKENLIFE_BROKER_URL to a plain Redis (redis://) or "
                "RabbitMQ (amqp://) for the task queue"
            )
        return self

    @model_validator(mode="after")
    def _retry_bounds(self) -> Settings:
        for kind in ("exchange", "refresh"):
            if getattr(self, f"{kind}_retry_max_seconds") < getattr(
                self, f"{kind}_retry_base_seconds"
            ):
                raise ValueError(
                    f"TOKENLIFE_{kind.upper()}_RETRY_MAX_SECONDS must be at least "
                    f"TOKENLIFE_{kind.upper()}_RETRY_BASE_SECONDS"
                )
        if self.api_callback_wait_seconds >= self.api_request_timeout_seconds:
            raise ValueError(
                "TOKENLIFE_API_CALLBACK_WAIT_SECONDS must be below "
                "TOKENLIFE_API_REQUEST_TIMEOUT_SECONDS, or users get a 504 for a slow exchange"
            )
        if self.api_token_wait_seconds >= self.api_request_timeout_seconds:
            raise ValueError(
                "TOKENLIFE_API_TOKEN_WAIT_SECONDS must be below "
                "TOKENLIFE_API_REQUEST_TIMEOUT_SECONDS, or a token call that waited its bound "
                "gets a 504 instead of the 503 with Retry-After it is promised"
            )
        if self.breaker_pause_seconds < self.breaker_probe_seconds:
            raise ValueError(
                "TOKENLIFE_BREAKER_PAUSE_SECONDS must be at least TOKENLIFE_BREAKER_PROBE_SECONDS"
            )
        if self.alert_webhook_urls and not self.alert_webhook_secret:
            raise ValueError(
                "TOKENLIFE_ALERT_WEBHOOK_URLS needs TOKENLIFE_ALERT_WEBHOOK_SECRET to sign with"
            )
        return self

    @property
    def breaker_policy(self) -> BreakerPolicy:
        return BreakerPolicy(
            min_failures=self.breaker_min_failures,
            failure_rate=self.breaker_failure_rate,
            window_seconds=self.breaker_window_seconds,
            probe_seconds=self.breaker_probe_seconds,
            pause_seconds=self.breaker_pause_seconds,
            recovery_rate=self.breaker_recovery_rate,
        )

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def result_backend_url(self) -> str:
        """Where Celery keeps task results (an exchange's outcome the API waits for): the
        Redis of TOKENLIFE_REDIS_URL when it is one server, else the broker's Redis, else
        RabbitMQ's reply queues (`rpc://`)."""
        if _standalone(self.redis_url):
            return self.redis_url
        broker = self.effective_broker_url
        return broker if broker.startswith(("redis://", "rediss://", "unix://")) else "rpc://"


def _standalone(url: str) -> bool:
    return parse_redis_url(url).topology is Topology.STANDALONE


def load_settings() -> Settings:
    """Read the environment; turn pydantic's report into one readable ConfigurationError."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = "_".join(str(p) for p in error["loc"]).upper()
            name = f"TOKENLIFE_{where}" if where else "settings"
            lines.append(f"  {name}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("invalid settings:\n" + "\n".join(lines)) from None


def require_encryption_keys(settings: Settings) -> tuple[str, ...]:
    """TOKENLIFE_ENCRYPTION_KEYS; when unset, the development key `tokenlife up` wrote
    (development.find_development_key), so the CLI, the library, the API and a worker
    started by hand decrypt what `make run` stored. Never a new key: it could not decrypt
    anything already stored."""
    if settings.encryption_keys:
        return settings.encryption_keys
    path = find_development_key()
    if path is None:
        raise ConfigurationError(
            "TOKENLIFE_ENCRYPTION_KEYS is not set, and there is no development key "
            f"({STATE_DIR / 'dev.key'}, written by `tokenlife up` / `make run`) in "
            f"{Path.cwd()} or a directory above it. If tokens are stored already, set "
            "TOKENLIFE_ENCRYPTION_KEYS to the key(s) that encrypted them (no other key "
            "decrypts them), or run from the directory holding that dev.key. Only for a "
            "fresh deployment with nothing stored: make a key with `tokenlife keys generate`."
        )
    key = read_development_key(path)
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{path} is not a Fernet key (32 url-safe base64-encoded bytes); it was edited "
            "or truncated, and only the original decrypts the tokens stored with it"
        ) from None
    if path not in _warned:
        _warned.add(path)
        log.warning(
            "tokenlife: TOKENLIFE_ENCRYPTION_KEYS is not set; using the development key in "
            "%s. For production set TOKENLIFE_ENCRYPTION_KEYS (docs/configuration.md).",
            path,
        )
    return (key,)


# Development keys already warned about: a process resolves its keys more than once.
_warned: set[Path] = set()


def encryption_keys_in_use(settings: Settings) -> tuple[tuple[str, ...], Path | None]:
    """The keys require_encryption_keys finds, for a caller that reports a missing key
    instead of stopping (`tokenlife doctor`): (keys, the development key file they came
    from, or None when they are TOKENLIFE_ENCRYPTION_KEYS); ((), None) when there is none."""
    if settings.encryption_keys:
        return settings.encryption_keys, None
    try:
        keys = require_encryption_keys(settings)
    except ConfigurationError:
        return (), None
    return keys, find_development_key()
