"""Real parts only: a real Redis, a real Celery worker process, fake providers over HTTP.

Each run gets its own key prefix (which also namespaces Celery's keys) and its own
Redis database, so nothing else in that Redis is touched.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.fakes.generic import FakeGeneric
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.receiver import AlertReceiver
from tests.fakes.server import FakeServers
from tests.support import (
    Fakes,
    WorkerHandle,
    client_app,
    integrations_toml,
    start_worker,
    stop_worker,
    wait_for,
)
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
_worker_log: Path | None = None


def _claim_database() -> int:
    """The first empty database that no other run has claimed."""
    for db in range(1, 16):
        client = sync_redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if client.set("tokenlife-test-run", str(os.getpid()), nx=True, ex=3600):
            if client.dbsize() == 1:
                client.close()
                return db
            client.delete("tokenlife-test-run")
        client.close()
    raise RuntimeError("no free Redis database among 1..15 for this test run")


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    try:
        sync_redis.Redis(host=REDIS_HOST, port=REDIS_PORT).ping()
    except sync_redis.ConnectionError:
        pytest.fail(f"no Redis on {REDIS_HOST}:{REDIS_PORT}; `.ci/run` starts one")
    db = _claim_database()
    yield db
    client = sync_redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()  # the database was empty and claimed for this run alone
    client.close()


@pytest.fixture(scope="session")
def fakes() -> Iterator[Fakes]:
    google, microsoft, generic = FakeGoogle(), FakeMicrosoft(), FakeGeneric()
    receiver = AlertReceiver()
    servers = FakeServers()
    servers.start(google, microsoft, generic, receiver)
    callback = "http://127.0.0.1:9/oauth/callback"
    google.register("google-client", "google-secret", callback)
    microsoft.register("ms-client", "ms-secret", callback)
    generic.register("generic-client", "generic-secret", callback)
    yield Fakes(
        google=google, microsoft=microsoft, generic=generic, callback=callback, receiver=receiver
    )
    servers.stop()


@pytest.fixture(scope="session")
def settings(redis_db: int, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    directory = tmp_path_factory.mktemp("config")
    path = directory / "integrations.toml"
    path.write_text(integrations_toml(fakes, dead_port=_dead_port()))
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        key_prefix=f"test-{uuid.uuid4().hex[:8]}",
        # A second, older key, as during a rotation: tests/e2e/test_key_rotation.py.
        encryption_keys=(Fernet.generate_key().decode(), Fernet.generate_key().decode()),
        integrations_file=path,
        http_timeout_seconds=1.0,
        exchange_max_retries=2,
        exchange_retry_base_seconds=0.2,
        exchange_retry_max_seconds=1.0,
        alert_webhook_urls=(f"{fakes.receiver.base_url}/session-hook",),
        alert_webhook_secret="session-webhook-secret",
        alert_retry_base_seconds=0.01,
        alert_claim_idle_seconds=0,
    )


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerHandle]:
    global _worker_log
    directory = tmp_path_factory.mktemp("worker")
    _worker_log = directory / "worker.log"
    log = _worker_log.open("wb")
    process = start_worker(settings, directory, log, f"test-{settings.key_prefix}")
    app = client_app(settings)
    try:
        wait_for(
            lambda: process.poll() is not None or bool(app.control.ping(timeout=0.5)),
            timeout=60,
            what="the worker to answer ping",
        )
        if process.poll() is not None:
            pytest.fail(f"worker exited with {process.returncode}:\n{_worker_log.read_text()}")
        yield WorkerHandle(app=app, process=process, log_path=_worker_log)
    finally:
        stop_worker(process)
        log.close()
        app.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def tl(settings: Settings, fakes: Fakes) -> AsyncIterator[Tokenlife]:
    async with Tokenlife.from_environment(settings) as instance:
        yield instance


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    uses_worker = "worker" in getattr(item, "fixturenames", ())
    if report.failed and uses_worker and _worker_log is not None and _worker_log.exists():
        tail = _worker_log.read_text(errors="replace").splitlines()[-80:]
        report.sections.append(("celery worker log (last 80 lines)", "\n".join(tail)))


def _dead_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def refusing_prompt(fakes: Fakes) -> Iterator[None]:
    """The generic fake as a certified OpenID server without select_account (oidc-provider
    refuses it so: tests/interop)."""
    fakes.generic.prompt_values_supported = ("none", "login", "consent")
    try:
        yield
    finally:
        fakes.generic.prompt_values_supported = None
