"""docker-compose.yml's services as processes on this machine (it has no Docker engine).

Each service runs its `command` after the image's ENTRYPOINT, with the environment
Compose would give it (the image's ENV, then the env file, then `environment`), as many
times as `deploy.replicas` says. What Docker would provide is mapped, and only that:
- service names as hosts: `redis:6379` is a redis-server of our own on a free port (run
  with the redis service's own command), `rabbitmq` is the RabbitMQ of this machine;
- bind mounts: a container path in the environment becomes the host file mounted there;
- published ports: the API listens on a free port of 127.0.0.1 instead of 8080;
- the container hostname: each replica gets its own HOSTNAME, which Celery names its node
  after in a container (`--hostname celery@$HOSTNAME` here, as two replicas share a host).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from tests.deploy import compose
from tests.redis_process import free_port

VENV_BIN = Path(sys.executable).parent


@dataclass
class HostProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    healthcheck: list[str] | None
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.cwd / "output.log"

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT
        )

    def healthy(self) -> bool:
        """The service's healthcheck, run as Docker runs it: exit status 0 is healthy."""
        assert self.healthcheck is not None
        result = subprocess.run(
            self.healthcheck, env=self.env, cwd=self.cwd, capture_output=True, timeout=30
        )
        return result.returncode == 0

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # what `docker compose down` sends first

    def stop(self) -> None:
        self.terminate()
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log is not None:
            self.log.close()

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class HostStack:
    directory: Path
    dot_env: dict[str, str]
    profiles: set[str]
    rabbitmq_url: str
    redis_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: list[HostProcess] = field(default_factory=list)

    def build(self) -> None:
        # Compose interpolates with the .env beside the file (our shell's variables are
        # left out on purpose: the test decides every value).
        document = compose.interpolate_all(compose.load_raw(), self.dot_env)
        services = compose.active_services(document, self.profiles)
        entrypoint = compose.exec_form(compose.final_stage("ENTRYPOINT")[-1])
        image_env = _image_environment()
        for name, service in services.items():
            if name == "rabbitmq":
                continue  # this machine's RabbitMQ stands in for it
            if name == "redis":
                self.processes.append(self._redis(service))
                continue
            mounts = _bind_mounts(service)
            declared = {
                **image_env,
                **(self.dot_env if service.get("env_file") else {}),
                **compose.environment(service),
            }
            env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
            env.update({k: self._host_value(v, mounts) for k, v in declared.items()})
            env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
            if service.get("ports"):
                env.update(TOKENLIFE_API_HOST="127.0.0.1", TOKENLIFE_API_PORT=str(self.api_port))
            replicas = int(service.get("deploy", {}).get("replicas", 1))
            for replica in range(1, replicas + 1):
                hostname = f"{self.directory.name}-{name}-{replica}"
                argv = [str(VENV_BIN / entrypoint[0]), *entrypoint[1:], *service["command"]]
                if service["command"][0] == "worker":
                    argv += ["--hostname", f"celery@{hostname}"]
                self.processes.append(
                    HostProcess(
                        name=f"{name}-{replica}",
                        argv=argv,
                        env={**env, "HOSTNAME": hostname},
                        cwd=self.directory / f"{name}-{replica}",
                        healthcheck=_healthcheck(service),
                    )
                )

    def _redis(self, service: Mapping[str, Any]) -> HostProcess:
        # The service's own command; the container's port and /data become ours.
        argv = [*service["command"], "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.directory / "redis-data")]
        (self.directory / "redis-data").mkdir(parents=True, exist_ok=True)
        return HostProcess("redis", argv, dict(os.environ), self.directory / "redis", None)

    def _host_value(self, value: str, mounts: Mapping[str, str]) -> str:
        if value in mounts:
            return mounts[value]
        parts = urlsplit(value)
        if parts.scheme in ("redis", "rediss") and parts.hostname == "redis":
            netloc = parts.netloc.replace("redis:6379", f"127.0.0.1:{self.redis_port}")
            return urlunsplit(parts._replace(netloc=netloc))
        if parts.scheme.startswith("amqp") and parts.hostname == "rabbitmq":
            return self.rabbitmq_url
        return value

    def by_service(self, service: str) -> list[HostProcess]:
        return [p for p in self.processes if p.name.rsplit("-", 1)[0] == service]

    def start(self, *services: str) -> None:
        for process in self.processes:
            if process.name.rsplit("-", 1)[0] in services:
                process.start()

    def exited(self) -> list[str]:
        return [
            f"{p.name} exited with {p.process.returncode}"
            for p in self.processes
            if p.process is not None and p.process.poll() is not None
        ]

    def stop(self) -> None:
        # The API, beat and workers (together) before Redis, so they can save on the way out.
        others = [p for p in self.processes if p.name != "redis"]
        for process in others:
            process.terminate()
        for process in [*others, *self.by_service("redis")]:
            process.stop()

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.processes)


def wait_until(condition: Any, *, timeout: float, what: str, stack: HostStack) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stack.exited() or time.monotonic() > deadline:
            raise AssertionError(
                f"waiting for {what}: {stack.exited() or 'timed out'}\n{stack.logs()}"
            )
        time.sleep(0.1)


def _image_environment() -> dict[str, str]:
    """ENV of the image's last stage (`KEY=VALUE ...` form)."""
    values: dict[str, str] = {}
    for arguments in compose.final_stage("ENV"):
        for pair in arguments.split():
            key, _, value = pair.partition("=")
            values[key] = value
    return values


def _bind_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> host path of each bind mount (relative to the project)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = str((compose.ROOT / source).resolve())
    return mounts


def _healthcheck(service: Mapping[str, Any]) -> list[str] | None:
    check = service.get("healthcheck")
    if check is None:  # the image's HEALTHCHECK applies
        (instruction,) = compose.final_stage("HEALTHCHECK")
        return compose.exec_form(instruction.partition(" CMD ")[2])
    if check.get("disable"):
        return None
    kind, *argv = check["test"]
    return ["sh", "-c", argv[0]] if kind == "CMD-SHELL" else argv
