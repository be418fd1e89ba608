"""Real faults: a redis-server of the test's own, a worker as a process group, both
killed with SIGKILL and started again on the same files and port.

Everything here starts real processes in sessions of their own (`start_new_session`), so
`os.killpg` takes a whole worker (main process, pool children, embedded beat) at once,
as a host crash or an OOM kill of the container would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis as sync_redis
from celery import Celery
from cryptography.fernet import Fernet
from tests.fakes.base import FakeProvider, Family
from tests.fakes.generic import FakeGeneric, FakeGenericWithGrace
from tests.redis_process import free_port
from tests.support import wait_for, worker_environment

from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import token_set_from_payload
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings

FIGURES = Path(os.environ.get("TOKENLIFE_FAULT_FIGURES", ".tokenlife/fault-figures.jsonl"))


def record_figure(test: str, **figures: Any) -> None:
    """Append what a fault test measured to FIGURES (one JSON object a line), and print it:
    docs/reliability.md quotes these, and an xfail'd run still leaves them behind."""
    line = json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime()), **figures})  # fmt: skip
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(line + "\n")
    print(line, file=sys.stderr)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to every process of the group; wait until none is left."""
    pgid = process.pid  # a session leader's group id is its pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=10)
    # Pool children are reparented, not our children: wait until the kernel reaped them.
    wait_for(lambda: _group_gone(pgid), timeout=10, what=f"process group {pgid} to die")


class RedisServer:
    """redis-server on a free port with the AOF on (fsync every second), in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start, or start again on the same port and files; return once it answers."""
        self.starts += 1
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--dir", str(self.directory), "--daemonize", "no",
             "--logfile", str(self.directory / "redis.log")],
            start_new_session=True,
        )  # fmt: skip
        wait_for(self._answers, timeout=30, what=f"redis-server on port {self.port} to load")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server exited with {self.process.returncode}:\n{log}")
        client = sync_redis.Redis(port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())  # LOADING (the AOF being replayed) raises
        except sync_redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        _kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@dataclass
class WorkerGroup:
    """`celery -A tokenlife.worker worker` (with `-B`: beat embedded) as a process group."""

    settings: Settings
    directory: Path
    name: str
    beat: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 2
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        self.starts += 1
        extra: list[str] = []
        if self.beat:
            # A fresh schedule file each start: a SIGKILL may leave the old shelve torn.
            extra = ["-B", "--schedule", str(self.directory / f"{self.name}-beat-{self.starts}")]
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._log.write(f"\n===== start {self.starts} at {time.time():.3f} =====\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tokenlife.worker", "worker",
             "--pool", "prefork", "--concurrency", str(self.concurrency),
             "--loglevel", "INFO", "--hostname", f"{self.name}@%h",
             "--without-gossip", "--without-mingle", *extra],
            env={**worker_environment(self.settings), **self.env},
            cwd=self.directory,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, app: Celery, timeout: float = 60) -> None:
        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n"
                                     + self.log()[-3000:])  # fmt: skip
            return bool(app.control.ping(timeout=0.5))

        wait_for(answers, timeout=timeout, what=f"worker {self.name} to answer ping")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: main process, pool children and beat at once."""
        assert self.process is not None
        _kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            pgid = self.process.pid
            os.killpg(pgid, signal.SIGTERM)  # warm shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
            if not _group_gone(pgid):
                _kill_group(self.process)
        if self._log is not None:
            self._log.close()
            self._log = None


CALLBACK = "http://127.0.0.1:9/oauth/callback"
SCOPES = ("openid", "offline_access")


@dataclass
class FaultFakes:
    strict: FakeGeneric
    grace: FakeGenericWithGrace
    integrations_file: Path

    def provider(self, integration: str) -> FakeGeneric:
        return self.strict if integration == "strict" else self.grace


def fault_integrations_toml(strict: FakeProvider, grace: FakeProvider) -> str:
    """Two custom integrations: `strict` (rotation with reuse detection, no grace) and
    `grace` (the same, with a reuse grace window)."""
    parts = []
    for name, fake in (("strict", strict), ("grace", grace)):
        parts.append(f'''[integrations.{name}]
provider = "custom"
authorize_url = "{fake.base_url}/authorize"
token_url = "{fake.base_url}/token"
client_id = "fault-client"
client_secret = "fault-secret"
redirect_uri = "{CALLBACK}"
scopes = ["openid", "offline_access"]
''')
    return "\n".join(parts)


def make_settings(redis_url: str, fakes: FaultFakes, **update: Any) -> Settings:
    """A deployment of its own: its key prefix (Celery's keys too) and its encryption key."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=redis_url,
        key_prefix=f"faults-{uuid.uuid4().hex[:8]}",
        encryption_keys=(Fernet.generate_key().decode(),),
        integrations_file=fakes.integrations_file,
        http_timeout_seconds=1.0,
        **update,
    )


async def open_runtime(settings: Settings) -> Runtime:
    return await Runtime.open(await load_config(settings))


async def seed(
    runtime: Runtime,
    fakes: FaultFakes,
    integration: str,
    count: int,
    *,
    lifetime: int,
    now: float,
    prefix: str = "c",
    due_at: float | None = None,
) -> dict[str, str]:
    """`count` connections due at `due_at` (now by default), their tokens minted by the
    fake; returns connection id -> family."""
    fake = fakes.provider(integration)
    families: dict[str, str] = {}
    for n in range(count):
        body = fake.mint("fault-client", SCOPES, lifetime)
        cid = f"{prefix}-{n}"
        families[cid] = body.pop("family")
        await runtime.tokens.save(
            integration=integration, connection_id=cid, provider="custom",
            tokens=token_set_from_payload(body, now), verdict=Verdict.REFRESHABLE,
            status=Status.ACTIVE, scopes_requested=SCOPES,
            next_check_at=now if due_at is None else due_at, now=now,
        )  # fmt: skip
    return families


async def queue_idle(runtime: Runtime) -> bool:
    """Nothing waiting in the worker's queue and nothing delivered but unacknowledged."""
    prefix = runtime.config.settings.key_prefix
    queued = await runtime.redis.llen(f"{prefix}:celery:{prefix}")
    unacked = await runtime.redis.hlen(f"{prefix}:celery:unacked")
    return int(queued) == 0 and int(unacked) == 0


Key = tuple[str, str]  # (integration, connection id)


async def stored_refresh_tokens(runtime: Runtime, keys: list[Key]) -> dict[Key, str | None]:
    return {k: (await runtime.tokens.tokens(*k)).refresh_token for k in keys}


def refreshed_since(
    runtime: Runtime, pending: set[Key], before: dict[Key, int], family: Callable[[Key], Family]
) -> Callable[[], Awaitable[bool]]:
    """A condition: every pending connection refreshed (and saved) since `before`, or its
    family revoked and the connection flagged for it. Connections leave `pending` as they
    get there."""

    async def condition() -> bool:
        for k in sorted(pending):
            f = family(k)
            if f.revoked:
                done = (await runtime.tokens.get(*k)).status is Status.REAUTHORIZATION_REQUIRED
            else:
                stored = (await runtime.tokens.tokens(*k)).refresh_token
                done = f.refreshes > before[k] and stored == f.live
            if done:
                pending.discard(k)
        return not pending

    return condition


@dataclass
class ApiProcess:
    """`tokenlife api` as a process group on a free port."""

    settings: Settings
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.directory / "api.log").open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "tokenlife"), "api", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=worker_environment(self.settings), cwd=self.directory,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def log(self) -> str:
        path = self.directory / "api.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _kill_group(self.process)
