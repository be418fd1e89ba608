"""Every entry point finds the development key `tokenlife up` wrote, from the project's
directory or any directory below it, when TOKENLIFE_ENCRYPTION_KEYS is not set; and no
message tells a user to replace a key that encrypts stored tokens."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support import Fakes, WorkerHandle, connect, wait_for, worker_environment
from tokenlife.development import development_key, find_development_key, read_development_key
from tokenlife.errors import ConfigurationError
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

API_KEY = "dev-key-test-api-key-0123456789"


def project_with_key(root: Path, key: str) -> Path:
    """A project whose `.tokenlife/dev.key` holds `key`; returns a subdirectory of it."""
    state = root / ".tokenlife"
    state.mkdir(mode=0o700)
    fd = os.open(state / "dev.key", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    below = root / "src" / "app"
    below.mkdir(parents=True)
    return below


def without_keys(settings: Settings) -> dict[str, str]:
    env = worker_environment(settings)
    env.pop("TOKENLIFE_ENCRYPTION_KEYS")
    return env


def test_the_key_is_found_from_below_and_only_when_nobody_else_may_write_it(
    tmp_path: Path,
) -> None:
    development_key(tmp_path / ".tokenlife")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    path = find_development_key(below)
    assert path == tmp_path / ".tokenlife" / "dev.key"
    key = read_development_key(path)
    path.chmod(0o666)  # anyone could have planted this key
    with pytest.raises(ConfigurationError, match="only it may write"):
        read_development_key(path)
    path.chmod(0o600)
    (tmp_path / ".tokenlife").chmod(0o777)  # or swapped the file in this directory
    with pytest.raises(ConfigurationError, match="only it may write"):
        read_development_key(path)
    (tmp_path / ".tokenlife").chmod(0o700)
    assert read_development_key(path) == key


def test_a_symlinked_key_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.key"
    elsewhere.write_text("not-mine\n")
    elsewhere.chmod(0o600)
    (tmp_path / ".tokenlife").mkdir(mode=0o700)
    (tmp_path / ".tokenlife" / "dev.key").symlink_to(elsewhere)
    path = find_development_key(tmp_path)
    assert path is not None
    with pytest.raises(ConfigurationError, match="can't read"):
        read_development_key(path)


async def test_cli_library_and_api_all_use_the_development_key(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, settings: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    cid = "dev-" + uuid.uuid4().hex[:10]
    await connect(tl, worker, "generic-offline", cid, login_hint=cid)
    # What `make run` did: its key encrypts what is stored (here, the session's first key).
    below = project_with_key(tmp_path, settings.encryption_keys[0])
    key_path = str(tmp_path / ".tokenlife" / "dev.key")

    # The CLI, started from a subdirectory: a refresh decrypts the stored refresh token.
    cli = subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "connections", "refresh", "generic-offline",
         cid, "--json"],
        env=without_keys(settings), cwd=below, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["outcome"] == "refreshed"
    assert f"using the development key in {key_path}" in cli.stderr

    # The library.
    monkeypatch.chdir(below)
    caplog.set_level(logging.WARNING, logger="tokenlife.settings")
    bare = settings.model_copy(update={"encryption_keys": ()})
    async with Tokenlife.from_environment(bare) as library:
        token = await library.get_access_token("generic-offline", cid)
    assert token.access_token in fakes.generic.issued_secrets
    assert f"using the development key in {key_path}" in caplog.text

    # The API, started on its own.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "api.log"
    with log.open("wb") as sink:
        api = subprocess.Popen(
            [sys.executable, "-m", "tokenlife.cli", "api", "--port", str(port)],
            env={**without_keys(settings), "TOKENLIFE_API_KEYS": API_KEY},
            cwd=below, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/connections/generic-offline/{cid}/token",
                method="POST", headers={"Authorization": f"Bearer {API_KEY}"},
            )  # fmt: skip
            answer: dict[str, str] = {}

            def answered() -> bool:
                try:
                    with urllib.request.urlopen(request, timeout=2) as response:
                        answer.update(json.load(response))
                        return True
                except OSError:
                    return api.poll() is not None

            wait_for(answered, timeout=30, what="the API to answer")
        finally:
            api.terminate()
            api.wait(timeout=10)
    assert answer.get("access_token") in fakes.generic.issued_secrets, log.read_text()
    assert f"using the development key in {key_path}" in log.read_text()


def test_without_any_key_the_message_never_says_to_replace_one(
    settings: Settings, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "connections", "show", "generic", "x"],
        env=without_keys(settings), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "TOKENLIFE_ENCRYPTION_KEYS is not set" in message
    assert ".tokenlife/dev.key" in message and str(tmp_path) in message
    assert "set TOKENLIFE_ENCRYPTION_KEYS to the key(s) that encrypted them" in message
    assert "Only for a fresh deployment with nothing stored" in message
