"""Helpers the tests share: waiting by condition, the consent dance, reading events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from celery import Celery
from redis.asyncio import Redis

from tests.fakes.base import FakeProvider
from tests.fakes.generic import FakeGeneric
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.receiver import AlertReceiver
from tokenlife.adapters.connection_record import Connection as StoredConnection
from tokenlife.adapters.event_consumer import order, qualified
from tokenlife.adapters.keys import Keys
from tokenlife.celery_config import celery_config
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import token_set_from_payload
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime
from tokenlife.settings import Settings


@dataclass
class Fakes:
    google: FakeGoogle
    microsoft: FakeMicrosoft
    generic: FakeGeneric
    callback: str
    receiver: AlertReceiver


@dataclass
class WorkerHandle:
    app: Celery
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a worker process configured like `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
    env.update(
        {
            "TOKENLIFE_REDIS_URL": settings.redis_url,
            "TOKENLIFE_KEY_PREFIX": settings.key_prefix,
            "TOKENLIFE_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
            "TOKENLIFE_INTEGRATIONS_FILE": str(settings.integrations_file),
            "TOKENLIFE_HTTP_TIMEOUT_SECONDS": str(settings.http_timeout_seconds),
            "TOKENLIFE_EXCHANGE_MAX_RETRIES": str(settings.exchange_max_retries),
            "TOKENLIFE_EXCHANGE_RETRY_BASE_SECONDS": str(settings.exchange_retry_base_seconds),
            "TOKENLIFE_EXCHANGE_RETRY_MAX_SECONDS": str(settings.exchange_retry_max_seconds),
            "TOKENLIFE_PROVIDER_CONCURRENCY": str(settings.provider_concurrency),
            "TOKENLIFE_ALERT_WEBHOOK_URLS": ",".join(settings.alert_webhook_urls),
            "TOKENLIFE_ALERT_WEBHOOK_SECRET": settings.alert_webhook_secret or "",
            "TOKENLIFE_ALERT_RETRY_BASE_SECONDS": str(settings.alert_retry_base_seconds),
            "TOKENLIFE_ALERT_CLAIM_IDLE_SECONDS": str(settings.alert_claim_idle_seconds),
            "TOKENLIFE_DISCOVERY_RETRY_SECONDS": str(settings.discovery_retry_seconds),
            "TOKENLIFE_BREAKER_MIN_FAILURES": str(settings.breaker_min_failures),
            "TOKENLIFE_BREAKER_FAILURE_RATE": str(settings.breaker_failure_rate),
            "TOKENLIFE_BREAKER_WINDOW_SECONDS": str(settings.breaker_window_seconds),
            "TOKENLIFE_BREAKER_PROBE_SECONDS": str(settings.breaker_probe_seconds),
            "TOKENLIFE_BREAKER_PAUSE_SECONDS": str(settings.breaker_pause_seconds),
            "TOKENLIFE_BREAKER_RECOVERY_RATE": str(settings.breaker_recovery_rate),
            "TOKENLIFE_REDIS_SHARDS": str(settings.redis_shards),
        }
    )
    if settings.broker_url is not None:
        env["TOKENLIFE_BROKER_URL"] = settings.broker_url
    return env


def start_worker(
    settings: Settings, directory: Path, log: IO[bytes], name: str, *extra: str
) -> subprocess.Popen[bytes]:
    """`celery -A tokenlife.worker worker` as a real process, logging to `log`."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "tokenlife.worker", "worker",
            "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
            "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", *extra,
        ],
        env=worker_environment(settings),
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # warm shutdown: running tasks finish
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def client_app(settings: Settings) -> Celery:
    """A Celery client as an app would build one: same broker, same namespace."""
    app = Celery("tokenlife-test-client", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


async def consent(
    tl: Tokenlife, integration: str, connection_id: str, **user: str
) -> dict[str, str]:
    """Send the user to the provider, which consents at once; return the callback query.

    `user` adds query parameters the fake understands: login_hint=NAME, deny="1".
    """
    url = await tl.authorize_url(integration, connection_id)
    if user:
        url += "&" + urlencode(user)
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as r:
        assert r.status == 302, f"provider answered {r.status}: {await r.text()}"
        location = r.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def exchange(worker: WorkerHandle, timeout: float = 60, **kwargs: Any) -> dict[str, Any]:
    result = worker.app.send_task("tokenlife.exchange_code", kwargs=kwargs)
    summary: dict[str, Any] = await asyncio.to_thread(result.get, timeout=timeout)
    return summary


async def connect(
    tl: Tokenlife, worker: WorkerHandle, integration: str, connection_id: str, **user: str
) -> dict[str, Any]:
    callback = await consent(tl, integration, connection_id, **user)
    return await exchange(worker, state=callback["state"], code=callback["code"])


async def stored_connection(
    tl: Tokenlife, integration: str, connection_id: str
) -> StoredConnection:
    """The connection as stored (Unix times, Status members, lifetime_seconds), for tests
    that compare it with clocks; `Tokenlife.connection` answers the API's model."""
    runtime = await tl._ready()
    return await runtime.tokens.get(integration, connection_id)


async def events_for(
    redis: Redis, settings: Settings, connection_id: str
) -> list[tuple[str, dict[str, Any]]]:
    entries = await stream_entries(redis, Keys(settings.key_prefix, settings.redis_shards))
    found: list[tuple[str, dict[str, Any]]] = []
    for _, fields in entries:
        data = json.loads(fields["data"])
        if data.get("connection_id") == connection_id:
            found.append((fields["type"], data))
    return found


def integrations_toml(fakes: Fakes, dead_port: int) -> str:
    g, m, x = fakes.google.base_url, fakes.microsoft.base_url, fakes.generic.base_url
    drive = '["openid", "https://www.googleapis.com/auth/drive.readonly"]'
    mail = '["openid", "https://graph.microsoft.com/Mail.Read"]'
    google = f'''client_id = "google-client"
client_secret = "google-secret"
redirect_uri = "{fakes.callback}"
authorize_url = "{g}/o/oauth2/v2/auth"
token_url = "{g}/token"
revocation_url = "{g}/revoke"
scopes = {drive}
'''
    microsoft = f'''client_id = "ms-client"
client_secret = "ms-secret"
redirect_uri = "{fakes.callback}"
scopes = {mail}
'''
    generic = f'''client_id = "generic-client"
client_secret = "generic-secret"
redirect_uri = "{fakes.callback}"
scopes = ["openid", "profile"]
'''
    return f'''
[integrations.google]
provider = "google"
{google}
[integrations.google-select-account]
provider = "google"
extra_authorization_params = {{ prompt = "select_account" }}
{google}
[integrations.google-as-custom]
provider = "custom"
{google}
[integrations.microsoft]
provider = "microsoft"
tenant = "contoso"
authorize_url = "{m}/{{tenant}}/oauth2/v2.0/authorize"
token_url = "{m}/{{tenant}}/oauth2/v2.0/token"
{microsoft}
[integrations.microsoft-as-custom]
provider = "custom"
authorize_url = "{m}/contoso/oauth2/v2.0/authorize"
token_url = "{m}/contoso/oauth2/v2.0/token"
{microsoft}
[integrations.generic]
provider = "custom"
authorize_url = "{x}/authorize"
token_url = "{x}/token"
{generic}
[integrations.generic-7d]
provider = "custom"
authorize_url = "{x}/authorize"
token_url = "{x}/token"
token_endpoint_auth_method = "client_secret_post"
minimum_access_token_only_lifetime_days = 7
{generic}
[integrations.generic-offline]
provider = "custom"
issuer = "{x}"
extra_scopes = ["offline_access"]
extra_authorization_params = {{ prompt = "consent" }}
{generic}
[integrations.github-account]
provider = "github"
authorize_url = "{x}/authorize"
token_url = "{x}/token"
account_url = "{x}/user"
client_id = "generic-client"
client_secret = "generic-secret"
redirect_uri = "{fakes.callback}"
[integrations.generic-unreachable]
provider = "custom"
authorize_url = "{x}/authorize"
token_url = "http://127.0.0.1:{dead_port}/token"
{generic}
'''


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str
) -> None:
    """Poll an async condition until it holds; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def make_due(
    redis: Redis, settings: Settings, integration: str, connection_id: str, **fields: str
) -> float:
    """What the passing of time does: the connection's due time is now. `fields` overwrite
    stored metadata first (e.g. expires_at), as if the token were older."""
    keys = Keys(settings.key_prefix, settings.redis_shards)
    now = time.time()
    mapping: dict[str, str] = {**fields, "next_refresh_at": repr(now)}
    await redis.hset(keys.connection(integration, connection_id), mapping=mapping)  # type: ignore[arg-type]
    await put_on_schedule(redis, keys, integration, connection_id, now)
    return now


async def run_refresh_tick(worker: WorkerHandle) -> None:
    """Do what beat does once a second: send tokenlife.refresh_due, and wait for it."""
    result = worker.app.send_task("tokenlife.refresh_due", ignore_result=False)
    await asyncio.to_thread(result.get, timeout=30)


async def event_types(redis: Redis, settings: Settings, connection_id: str) -> list[str]:
    return [t for t, _ in await events_for(redis, settings, connection_id)]


async def stream_entries(redis: Redis, keys: Keys) -> list[tuple[str, dict[str, str]]]:
    """Every entry of every shard's event stream, merged in stream order as readers merge
    them: (entry id "<stream id>/<shard>", fields)."""
    found: list[tuple[str, dict[str, str]]] = []
    for shard in keys.all_shards:
        entries = cast(list[tuple[str, dict[str, str]]], await redis.xrange(keys.events(shard)))
        found += [(qualified(entry_id, shard), fields) for entry_id, fields in entries]
    return sorted(found, key=lambda entry: order(entry[0]))


async def stream_events(redis: Redis, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the streams under `prefix` (default shards): (type, data)."""
    entries = await stream_entries(redis, Keys(prefix))
    return [(fields["type"], json.loads(fields["data"])) for _, fields in entries]


async def put_on_schedule(redis: Redis, keys: Keys, integration: str, cid: str, at: float) -> None:
    """What a save does to the schedule: the connection due at `at`."""
    await redis.zadd(keys.schedule_of(integration, cid), {keys.member(integration, cid): at})


@contextmanager
def serving_api(
    settings: Settings, directory: Path, api_keys: str, extra: Mapping[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """`tokenlife api` as a process on a free port, answering /healthz; (its base URL, its
    stderr log: JSON lines). `extra`: more environment, e.g. other TOKENLIFE_API_* settings."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**worker_environment(settings), "TOKENLIFE_API_KEYS": api_keys, **(extra or {})}
    log = directory / "api.log"
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return process.poll() is not None

    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlife.cli", "api", "--port", str(port)],
            env=env, cwd=directory, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
        try:
            wait_for(answers, timeout=30, what="tokenlife api to answer /healthz")
            assert process.poll() is None, log.read_text()
            yield base, log
        finally:
            process.terminate()
            process.wait(timeout=10)


async def save_minted(
    runtime: Runtime,
    fake: FakeProvider,
    integration: str,
    connection_id: str,
    *,
    client_id: str,
    scopes: tuple[str, ...],
    lifetime: int,
    issued_at: float,
    due_at: float,
) -> str:
    """A refreshable connection stored as an exchange would store it, with tokens the fake
    minted `issued_at` (a refresh token of a family of its own), due at `due_at`; returns
    the family."""
    body = fake.mint(client_id, scopes, lifetime)
    family = str(body.pop("family"))
    await runtime.tokens.save(
        integration=integration, connection_id=connection_id, provider="custom",
        tokens=token_set_from_payload(body, issued_at), verdict=Verdict.REFRESHABLE,
        status=Status.ACTIVE, scopes_requested=scopes, next_check_at=due_at, now=issued_at,
    )  # fmt: skip
    return family
