"""`tokenlife api` as a real process for the clients to call, configured like the test
run (its Redis, prefix, keys and integrations), so the sync client can block on it from
any thread or forked process."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support import wait_for, worker_environment
from tokenlife.settings import Settings

FULL = "client-full-key-0123456789"
LIMITED = "client-generic-key-0123456789"  # limited to the integration `generic`
RETURN_TO = "https://app.example.com/"


@contextmanager
def running_api(
    settings: Settings, directory: Path, extra: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The base URL of a `tokenlife api` answering /healthz; its log is in `directory`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **worker_environment(settings),
        "TOKENLIFE_API_KEYS": f"{FULL},{LIMITED}:generic",
        "TOKENLIFE_API_RETURN_TO_ALLOWED": RETURN_TO,
        **(extra or {}),
    }
    base = f"http://127.0.0.1:{port}"
    log = directory / "api.log"

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
            yield base
        finally:
            process.terminate()
            process.wait(timeout=10)
