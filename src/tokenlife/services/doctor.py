"""`tokenlife doctor`: gather the facts about a deployment, each read bounded in time, and
hand them to the pure judges (core/doctor.py, core/doctor_fleet.py).

Redis, the broker with the workers, and the integrations preflight are examined at once,
so a run takes about one timeout however much is down. A Redis or a broker that accepts a
connection and never answers can't hang it: Redis commands carry socket timeouts, and the
broker (kombu and Celery block) is asked from a daemon thread that is abandoned at the
deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar, cast

import aiohttp
from celery import Celery
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import connect
from tokenlife.adapters.sealed_records import RecordKind, SealedRecords
from tokenlife.celery_config import celery_config
from tokenlife.core.doctor import (
    BrokerFacts,
    Check,
    ErrorKind,
    RedisFacts,
    broker_checks,
    redact_url,
    redis_checks,
)
from tokenlife.core.doctor_fleet import (
    KeyFacts,
    KeySample,
    LivenessFacts,
    integration_checks,
    key_checks,
    liveness_checks,
)
from tokenlife.core.preflight import Finding
from tokenlife.core.presets import Preset
from tokenlife.preflight import preflight
from tokenlife.services.key_rotation import KeyCensus, KeyRing, KeyRotation
from tokenlife.settings import Settings, encryption_keys_in_use

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Bounds:
    timeout: float = 5.0  # each check; the preflight gets TOKENLIFE_HTTP_TIMEOUT_SECONDS more
    sample_size: int = 200  # stored connections decrypted at most
    ping_seconds: float = 1.0  # how long workers get to answer a ping (as `celery inspect ping`)


async def examine(
    settings: Settings,
    presets: Mapping[str, Preset],
    environ: Mapping[str, str],
    now: float,
    bounds: Bounds,
) -> list[Check]:
    """Every check, in the order an operator fixes things: storage, broker, keys,
    integrations, then the processes. The keys are found as every other entry point finds
    them (settings.require_encryption_keys: the development key `make run` wrote, in this
    directory or one above, when TOKENLIFE_ENCRYPTION_KEYS is unset)."""
    encryption_keys, development_key = encryption_keys_in_use(settings)
    (redis, sample, heartbeat), (broker, workers, ping_error), findings = await asyncio.gather(
        _redis_side(settings, encryption_keys, bounds),
        _broker_side(settings, bounds),
        _preflight_side(settings, presets, environ, bounds),
    )
    keys = KeyFacts(len(encryption_keys), sample,
                    None if development_key is None else str(development_key))  # fmt: skip
    liveness = LivenessFacts(
        interval_seconds=settings.refresh_due_interval_seconds,
        heartbeat_at=heartbeat,
        heartbeat_read=redis.error is None,
        workers=workers,
        ping_error=ping_error,
    )
    file = None if settings.integrations_file is None else str(settings.integrations_file)
    found, error = findings
    return [
        *redis_checks(redis),
        *broker_checks(broker),
        *key_checks(keys),
        *integration_checks(found, file=file, error=error),
        *liveness_checks(liveness, now),
    ]


async def _redis_side(
    settings: Settings, encryption_keys: tuple[str, ...], bounds: Bounds
) -> tuple[RedisFacts, KeySample | None, float | None]:
    url = redact_url(settings.redis_url)
    try:
        # No retry: the doctor reports a failure, it does not ride it out like a worker.
        client = connect(
            settings.redis_url, retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=bounds.timeout, socket_timeout=bounds.timeout,
        )  # fmt: skip
    except ValueError as exc:  # not a Redis URL at all
        return RedisFacts(url, f"invalid URL: {exc}", "other"), None, None
    try:
        keys = Keys(settings.key_prefix, settings.redis_shards)
        try:
            async with asyncio.timeout(bounds.timeout):
                info = {k: str(v) for k, v in (await client.info()).items()}
                rdb_save, refused = await _config_save(client)
                limit = None if refused else await _hash_value_limit(client)
                raw = await client.get(keys.heartbeat)
        except (RedisError, OSError, TimeoutError) as exc:
            return RedisFacts(url, _describe(exc), _kind(exc)), None, None
        facts = RedisFacts(url, info=info, rdb_save=rdb_save, config_refused=refused,
                           hash_value_limit=limit)  # fmt: skip
        sample = await key_sample(client, keys, encryption_keys, bounds)
        return facts, sample, None if raw is None else float(raw)
    finally:
        await client.aclose()


async def key_sample(
    client: Redis, keys: Keys, encryption_keys: tuple[str, ...], bounds: Bounds
) -> KeySample:
    """Up to `sample_size` stored connections counted as `tokenlife keys status` counts
    them (KeyRotation, read only); what was counted within the timeout is the sample."""
    rotation = KeyRotation(SealedRecords(client, keys), KeyRing(encryption_keys))
    census, error = KeyCensus(), None
    try:
        async with asyncio.timeout(bounds.timeout):
            await rotation.run(
                write=False, progress=lambda _: None, census=census,
                kinds=(RecordKind.CONNECTION,), limit=bounds.sample_size,
            )  # fmt: skip
    except TimeoutError:
        error = f"the {bounds.timeout:g} s bound"
    except (RedisError, OSError) as exc:
        error = _describe(exc)
    named = (keys.connection_named(k) for k in census.undecryptable_keys)
    return KeySample(
        examined=sum(census.by_kind.values()), current=census.by_key.get(0, 0),
        older=census.on_old_keys, undecryptable=census.undecryptable,
        examples=tuple(f"{n[0]}/{n[1]}" for n in named if n is not None),
        complete=census.complete and error is None, error=error,
    )  # fmt: skip


async def _config_save(client: Redis) -> tuple[str | None, str | None]:
    """RDB snapshot rules, or why they can't be read: managed services refuse CONFIG
    (ElastiCache: https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ClientConfig.RestrictedCommands.html)."""
    try:
        reply = cast(dict[str, str], await client.config_get("save"))
    except ResponseError as exc:
        return None, str(exc)
    return reply.get("save"), None


async def _hash_value_limit(client: Redis) -> int | None:
    """The longest hash field value kept in the compact encoding; Redis 6 names it
    hash-max-ziplist-value (Redis 7 keeps that name as an alias)."""
    try:
        reply = cast(dict[str, str], await client.config_get("hash-max-*-value"))
    except ResponseError:
        return None
    value = reply.get("hash-max-listpack-value", reply.get("hash-max-ziplist-value"))
    return int(value) if value is not None and value.isdigit() else None


def _kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, AuthenticationError) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
        return "auth"
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "refused"
    return "other"


def _describe(exc: BaseException) -> str:
    return str(exc) or f"no answer ({type(exc).__name__})"


async def _broker_side(
    settings: Settings, bounds: Bounds
) -> tuple[BrokerFacts, tuple[str, ...] | None, str | None]:
    """Connect as a worker would (celery_config: transport, TLS, key prefix), then ping.
    Two bounded steps: a broker that never answers costs one timeout, not two."""
    url = redact_url(settings.effective_broker_url)
    app = Celery("tokenlife-doctor", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.broker_connection_timeout = bounds.timeout
    try:
        try:
            error = await _in_daemon_thread(lambda: _connect(app, bounds.timeout),
                                            bounds.timeout + 0.25)  # fmt: skip
        except TimeoutError:
            error = f"no answer within {bounds.timeout:g} s"
        if error is not None:
            return BrokerFacts(url, error), None, None
        try:
            replies = await _in_daemon_thread(
                lambda: app.control.ping(timeout=bounds.ping_seconds),
                bounds.ping_seconds + bounds.timeout,
            )
        except Exception as exc:  # the broker went away between the two steps
            return BrokerFacts(url), (), _describe(exc)
        return BrokerFacts(url), tuple(name for reply in replies for name in reply), None
    finally:
        app.close()


def _connect(app: Celery, timeout: float) -> str | None:
    try:
        with app.connection_for_write(connect_timeout=timeout) as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout
            )
    except Exception as exc:  # kombu wraps each transport's errors differently
        return _describe(exc)
    return None


async def _in_daemon_thread(work: Callable[[], T], timeout: float) -> T:
    """`work()` in a thread that can be left behind: asyncio.to_thread's executor is
    joined when the loop closes, so a hung connect would hang the command at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (work(), None)
        except Exception as exc:
            outcome = (None, exc)
        with suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="tokenlife-doctor", daemon=True).start()
    return await asyncio.wait_for(future, timeout)


async def _preflight_side(
    settings: Settings, presets: Mapping[str, Preset], environ: Mapping[str, str],
    bounds: Bounds,
) -> tuple[list[Finding] | None, str | None]:  # fmt: skip
    if settings.integrations_file is None:
        return [], None
    limit = bounds.timeout + settings.http_timeout_seconds
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(limit):
            return await preflight(settings, presets, environ, session), None
    except TimeoutError:
        return None, f"no result within {limit:g} s (an issuer answers slowly?)"
    except Exception as exc:  # the other checks still get reported
        return None, f"it failed: {exc!r}"
