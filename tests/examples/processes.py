"""Serving the example apps of examples/ for real on 127.0.0.1, each by its framework's own
server in a process of its own, configured only through the environment as its README
says, against the session's Redis and fake providers.

Each app gets a key prefix and an integrations file of its own (the integrations'
redirect URIs name the app's port, or tokenlife's), and a client of its own at the fakes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import Fakes, wait_for, worker_environment
from tokenlife.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
API_KEY = "examples-api-key-0123456789"
GOOGLE_CLIENT = ("examples-google", "examples-google-secret")
GENERIC_CLIENT = ("examples-generic", "examples-generic-secret")
# The logs of the processes running now, by name: a failing test shows their last lines.
LOGS: dict[str, Path] = {}


def free_port() -> int:
    """A port nothing listens on: bound, then released, for a server started next."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different ports nothing listens on."""
    with ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def example_settings(settings: Settings, name: str, integrations: str, directory: Path) -> Settings:
    """The session's Redis and keys, with a key prefix and an integrations file of the
    example's own."""
    path = directory / f"{name}-integrations.toml"
    path.write_text(integrations)
    return settings.model_copy(
        update={"key_prefix": f"{settings.key_prefix}-{name}", "integrations_file": path}
    )


def app_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """What a deployment sets: TOKENLIFE_* as in `settings`, the examples importable."""
    env = worker_environment(settings)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLES), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@dataclass
class Served:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serving(
    command: list[str], env: dict[str, str], port: int, log_path: Path, *, ready: str = "/"
) -> Iterator[Served]:
    """`command` as a process that serves on `port`; yielded once `ready` answers (any
    HTTP status: the server is up), stopped at the end."""
    base = f"http://127.0.0.1:{port}"
    LOGS[log_path.name] = log_path
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            command, env=env, cwd=EXAMPLES, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_answering(base + ready, process, log_path)
            yield Served(base, process, log_path)
        finally:
            LOGS.pop(log_path.name, None)
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # an answer all the same
        except OSError:
            return False

    try:
        wait_for(answers, timeout=60, what=f"{url} to answer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{log_path.read_text()}") from None
    if process.poll() is not None:
        raise AssertionError(f"{process.args!r} exited with {process.returncode}:\n"
                             f"{log_path.read_text()}")  # fmt: skip


@dataclass
class Stack:
    """tokenlife's API and a worker, as a deployment runs them, with the integrations of
    the apps that use them; each such app has its port reserved here, so that the API
    may send browsers back to it (TOKENLIFE_API_RETURN_TO_ALLOWED)."""

    api: Served
    settings: Settings  # what the API and the worker run with
    app_ports: dict[str, int]


def stack_integrations(fakes: Fakes, callback: str) -> str:
    """At the fake Google, Drive as it should be and as a generic OAuth client (no refresh
    token); at the generic fake, a CRM that rotates refresh tokens."""
    google, generic = fakes.google.base_url, fakes.generic.base_url
    drive = f'''client_id = "{GOOGLE_CLIENT[0]}"
client_secret = "{GOOGLE_CLIENT[1]}"
redirect_uri = "{callback}"
authorize_url = "{google}/o/oauth2/v2/auth"
token_url = "{google}/token"
scopes = ["openid", "https://www.googleapis.com/auth/drive.readonly"]
'''
    return f'''[integrations.drive]
provider = "google"
{drive}
[integrations.drive-as-custom]
provider = "custom"
{drive}
[integrations.crm]
provider = "custom"
client_id = "{GENERIC_CLIENT[0]}"
client_secret = "{GENERIC_CLIENT[1]}"
redirect_uri = "{callback}"
authorize_url = "{generic}/authorize"
token_url = "{generic}/token"
scopes = ["openid", "profile", "offline_access"]
# OpenID Connect Core §11: offline_access needs prompt=consent (the custom default is
# select_account).
extra_authorization_params = {{ prompt = "consent" }}
'''
