"""A redis-server of a test's own, on a free port with AOF (appendfsync always), that the
test can kill with SIGKILL and start again on the same data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import redis as sync_redis

from tests.support import wait_for


class RedisProcess:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory), "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = sync_redis.Redis(host="127.0.0.1", port=self.port)
        wait_for(lambda: _answers(client), timeout=10, what=f"redis-server on {self.port}")
        client.close()

    def kill(self) -> None:
        """SIGKILL: what a crash does; everything acknowledged is in the AOF."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _answers(client: sync_redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (sync_redis.ConnectionError, sync_redis.exceptions.BusyLoadingError):
        return False
