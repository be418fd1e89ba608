"""A redis-server of a test's own on a free port, with its AOF, to kill and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import redis as sync_redis

from tests.support import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """`redis-server` in its own process group, AOF on (appendfsync always: a write
    acknowledged before a SIGKILL is there after the restart); `options` come last and
    override these (`"--appendonly", "no"`)."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.directory = directory
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--protected-mode", "no",
             # As docs/deployment.md recommends: connections stored compactly (the name Redis 6.2
             # knows; 7 calls it hash-max-listpack-value).
             "--hash-max-ziplist-value", "1024", *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = sync_redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _answers(client), timeout=10, what=f"redis-server on {self.port}")
        client.close()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _answers(client: sync_redis.Redis) -> bool:
    """Up and serving: refused while starting, BusyLoadingError while it replays its AOF."""
    try:
        return bool(client.ping())
    except (sync_redis.ConnectionError, sync_redis.exceptions.BusyLoadingError):
        return False
