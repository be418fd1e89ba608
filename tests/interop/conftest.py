"""A real authorization server for the interop tests: panva's oidc-provider (OpenID
Certified), run by Node.js from tests/interop/oidc_server/. `make test-interop` installs
Node.js and npm when missing; this fixture runs `npm ci` when node_modules is missing or
older than package-lock.json, starts the server on a free port and stops it at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_DIR = Path(__file__).resolve().parent / "oidc_server"
CLIENT_ID = "tokenlife-interop"
CLIENT_SECRET = "interop-secret-0123456789"
# Never followed: the tests stop at the redirect to it and read code/state/error.
CALLBACK = "http://127.0.0.1:9/oauth/callback"


@dataclass(frozen=True)
class OidcServer:
    issuer: str
    client_id: str
    # The same registration, but its refresh tokens rotate on every use (server.mjs).
    rotating_client_id: str
    client_secret: str
    redirect_uri: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` is not on PATH: the interop tests run oidc-provider on Node.js. "
            "`make test-interop` installs Debian's nodejs and npm when missing "
            "(apt-get install nodejs npm)"
        )
    return found


def _installed() -> bool:
    """npm writes node_modules/.package-lock.json on every install: older than the lock
    file (or absent) means the lock changed since, or nothing was installed."""
    marker = SERVER_DIR / "node_modules" / ".package-lock.json"
    lock = SERVER_DIR / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


def _npm_ci() -> None:
    if _installed():
        return
    done = subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund"],
        cwd=SERVER_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"npm ci failed in {SERVER_DIR}:\n{done.stdout}\n{done.stderr}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def oidc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcServer]:
    node = _tool("node")
    _npm_ci()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("oidc") / "server.log"
    process = subprocess.Popen(
        [node, "server.mjs", str(port), CLIENT_ID, CLIENT_SECRET, CALLBACK],
        cwd=SERVER_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    ready = threading.Event()

    def pump() -> None:  # the log, and "ready" out of it; keeps the pipe from filling up
        assert process.stdout is not None
        with log_path.open("w") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if line.strip() == "ready":
                    ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            reader.join(5)
            pytest.fail(f"oidc-provider did not start:\n{log_path.read_text()}")
    try:
        yield OidcServer(
            issuer=f"http://127.0.0.1:{port}",
            client_id=CLIENT_ID,
            rotating_client_id=f"{CLIENT_ID}-rotating",
            client_secret=CLIENT_SECRET,
            redirect_uri=CALLBACK,
            log_path=log_path,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        process.stdout.close()
