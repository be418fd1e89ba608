"""`tokenlife doctor` against real parts: a Redis of the test's own (with AOF, or
misconfigured), a real worker with embedded beat, RabbitMQ, and ports that refuse or
never answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.redis_process import RedisProcess, free_port
from tests.support import start_worker, stop_worker, wait_for
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.doctor import Status, exit_code
from tokenlife.core.policy import Status as ConnectionStatus
from tokenlife.core.policy import Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.providers import load_presets
from tokenlife.services.doctor import Bounds, examine
from tokenlife.settings import Settings

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
# What a careful operator writes: the preflight finds nothing in it.
CLEAN_INTEGRATIONS = """
[integrations.drive]
provider = "google"
client_id = "client"
client_secret = "secret"
redirect_uri = "https://app.example.com/oauth/callback"
scopes = ["openid", "https://www.googleapis.com/auth/drive.readonly"]
"""


def doctor(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> tuple[int, dict[str, Any], float]:
    """Run `tokenlife doctor --json` as an operator would; (exit code, report, seconds)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "doctor", "--json", *args],
        env={**base, **env}, capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout), elapsed


def statuses(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["area"], c["name"]): c["status"] for c in report["checks"]}


def check(report: dict[str, Any], area: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in report["checks"] if (c["area"], c["name"]) == (area, name)
    )
    return found


def key() -> str:
    return Fernet.generate_key().decode()


async def store_connection(url: str, prefix: str, encryption_key: str, cid: str) -> None:
    """A connection saved the way tokenlife saves one, under `encryption_key`."""
    redis = Redis.from_url(url, decode_responses=True)
    try:
        store = TokenStore(redis, Keys(prefix), Cipher([encryption_key]))
        await store.save(
            integration="google", connection_id=cid, provider="google",
            tokens=TokenSet(f"at-{cid}", "Bearer", f"rt-{cid}", time.time() + 3600, 3600,
                            "expires_in", None),
            verdict=Verdict.REFRESHABLE, status=ConnectionStatus.ACTIVE,
            scopes_requested=("openid",), next_check_at=None, now=time.time(),
        )  # fmt: skip
    finally:
        await redis.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """Start a redis-server of this test's own, with extra options; killed at teardown."""
    started: list[RedisProcess] = []

    def start(*options: str) -> RedisProcess:
        server = RedisProcess(tmp_path, *options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


async def test_a_healthy_deployment_passes_and_older_keys_are_counted(
    tmp_path: Path, own_redis: Callable[..., RedisProcess]
) -> None:
    server = own_redis("--appendfsync", "everysec")
    new, old = key(), key()
    prefix = f"doctor-{uuid.uuid4().hex[:8]}"
    integrations = tmp_path / "integrations.toml"
    integrations.write_text(CLEAN_INTEGRATIONS)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=server.url, key_prefix=prefix, encryption_keys=(new, old),
        integrations_file=integrations,
    )  # fmt: skip
    await store_connection(server.url, prefix, new, "user-new")
    await store_connection(server.url, prefix, old, "user-old")
    log = (tmp_path / "worker.log").open("wb")
    # A worker with embedded beat, as `tokenlife worker` runs by default.
    worker = start_worker(settings, tmp_path, log, f"doctor-{prefix}", "-B", "--concurrency", "1")
    try:
        probe = sync_redis.Redis.from_url(server.url)
        wait_for(
            lambda: worker.poll() is not None or bool(probe.exists(Keys(prefix).heartbeat)),
            timeout=30, what="beat's first refresh_due tick",
        )  # fmt: skip
        probe.close()
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        env = {
            "TOKENLIFE_REDIS_URL": server.url,
            "TOKENLIFE_KEY_PREFIX": prefix,
            "TOKENLIFE_ENCRYPTION_KEYS": f"{new},{old}",
            "TOKENLIFE_INTEGRATIONS_FILE": str(integrations),
        }
        code, report, _ = doctor(env, "--timeout", "2", "--strict")
    finally:
        stop_worker(worker)
        log.close()

    assert set(statuses(report).values()) == {"ok"}, report
    assert code == 0 and report["ok"] is True
    assert check(report, "redis", "persistence")["message"] == "AOF is on"
    sample = check(report, "keys", "sample")["message"]
    assert "all 2 stored connections decrypt" in sample
    assert "1 still use an older key" in sample
    assert "1 worker(s) answer: doctor-" in check(report, "worker", "ping")["message"]


async def test_a_misconfigured_redis_and_a_lost_key_fail_with_their_fixes(
    own_redis: Callable[..., RedisProcess],
) -> None:
    server = own_redis("--appendonly", "no", "--maxmemory", "64mb",
                       "--maxmemory-policy", "allkeys-lru")  # fmt: skip
    configured, lost = key(), key()
    prefix = f"doctor-{uuid.uuid4().hex[:8]}"
    await store_connection(server.url, prefix, configured, "user-kept")
    await store_connection(server.url, prefix, lost, "user-orphan")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=server.url, broker_url=RABBITMQ, key_prefix=prefix,
        encryption_keys=(configured,),
    )  # fmt: skip
    checks = await examine(settings, load_presets(), {}, time.time(), Bounds(1, ping_seconds=0.5))
    code = exit_code(checks, strict=False)
    report = {"checks": [c.as_dict() for c in checks]}

    assert code == 1
    found = statuses(report)
    assert found[("redis", "persistence")] == "error"
    assert found[("redis", "eviction")] == "error"
    assert "allkeys-lru" in check(report, "redis", "eviction")["message"]
    assert "appendonly yes" in check(report, "redis", "persistence")["fix"]
    # RabbitMQ answers, with its password hidden; no worker listens there.
    broker = check(report, "broker", "reachable")
    assert broker["status"] == "ok" and "guest:***@127.0.0.1:5672" in broker["message"]
    assert found[("worker", "ping")] == "error"
    assert found[("beat", "tick")] == "unknown"
    lost_key = check(report, "keys", "sample")
    assert lost_key["status"] == "error"
    assert "1 of all 2 stored connections" in lost_key["message"]
    assert "google/user-orphan" in lost_key["message"]
    assert "Put the key that encrypted them back" in lost_key["fix"]
    assert "generate" not in json.dumps(report)


def test_a_redis_and_a_broker_that_are_down_fail_fast(silent_port: int) -> None:
    closed = free_port()
    env = {
        "TOKENLIFE_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        # Accepts the connection, then never says a word: only a bound ends the wait.
        "TOKENLIFE_BROKER_URL": f"redis://127.0.0.1:{silent_port}/0",
        "TOKENLIFE_ENCRYPTION_KEYS": key(),
    }
    code, report, elapsed = doctor(env, "--timeout", "0.5")

    assert code == 1
    found = statuses(report)
    assert found[("redis", "reachable")] == "error"
    assert f"127.0.0.1:{closed}" in check(report, "redis", "reachable")["message"]
    assert found[("broker", "reachable")] == "error"
    assert (found[("worker", "ping")], found[("beat", "tick")]) == ("unknown", "unknown")
    assert found[("keys", "sample")] == "unknown"
    assert elapsed < 8, f"took {elapsed:.1f} s"


def test_the_development_key_is_found_from_a_subdirectory_like_every_command(
    tmp_path: Path,
) -> None:
    # As settings.require_encryption_keys finds it for the CLI, the API and the worker.
    (tmp_path / ".tokenlife").mkdir()
    dev_key = tmp_path / ".tokenlife" / "dev.key"
    dev_key.write_text(key())
    dev_key.chmod(0o600)
    (tmp_path / "sub").mkdir()
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = {"TOKENLIFE_REDIS_URL": closed, "TOKENLIFE_BROKER_URL": closed}

    _, report, _ = doctor(env, "--timeout", "0.5", cwd=tmp_path / "sub")

    configured = check(report, "keys", "configured")
    assert configured["status"] == "warning"
    assert str(dev_key) in configured["message"]
    assert "generate" not in json.dumps(report)


async def test_a_redis_that_never_answers_is_reported_within_the_bound(
    silent_port: int,
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:{silent_port}/0",
        broker_url=f"redis://127.0.0.1:{free_port()}/0", encryption_keys=(key(),),
    )  # fmt: skip
    started = time.monotonic()
    checks = await examine(settings, load_presets(), {}, time.time(), Bounds(timeout=0.5))
    elapsed = time.monotonic() - started

    redis = next(c for c in checks if c.area == "redis")
    assert redis.status is Status.ERROR and "rediss://" in (redis.fix or "")
    assert elapsed < 3, f"took {elapsed:.1f} s"


def test_invalid_settings_are_the_one_problem_printed_with_its_fix(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
    missing = tmp_path / "missing.toml"
    result = subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "doctor"],
        env={**base, "TOKENLIFE_INTEGRATIONS_FILE": str(missing)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ERROR    settings")
    assert f"TOKENLIFE_INTEGRATIONS_FILE: {missing} does not exist" in result.stdout
    assert lines[-2].strip().startswith("fix: Correct the TOKENLIFE_* variables")
    assert lines[-1] == "1 check(s): 1 error(s), 0 warning(s), 0 unknown"


async def test_a_redis_that_wants_a_password_gets_a_fix_about_the_password(
    own_redis: Callable[..., RedisProcess],
) -> None:
    server = own_redis()
    admin = sync_redis.Redis.from_url(server.url)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    for url in (server.url, server.url.replace("redis://", "redis://:wrong@")):
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            redis_url=url, broker_url=f"redis://127.0.0.1:{free_port()}/0",
            encryption_keys=(key(),),
        )  # fmt: skip
        checks = await examine(settings, load_presets(), {}, time.time(), Bounds(timeout=1))

        redis = next(c for c in checks if c.area == "redis")
        assert redis.status is Status.ERROR, redis
        assert "PASSWORD" in (redis.fix or ""), redis
        assert "wrong" not in redis.message
