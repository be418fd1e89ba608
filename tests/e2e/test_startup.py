"""The worker refuses to start on a wrong setting, with a message that says which."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support import worker_environment
from tokenlife.settings import Settings

CUSTOM_WITHOUT_TOKEN_URL = """
[integrations.broken]
provider = "custom"
client_id = "x"
client_secret = "y"
redirect_uri = "https://app.example/callback"
authorize_url = "https://idp.example/authorize"
"""

SECRET_FROM_UNSET_VARIABLE = """
[integrations.acme]
provider = "google"
client_id = "x"
client_secret_env = "TOKENLIFE_TEST_SURELY_UNSET"
redirect_uri = "https://app.example/callback"
"""


def start_worker(env: dict[str, str], cwd: Path, command: str) -> subprocess.CompletedProcess[str]:
    argv = {
        "celery": [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tokenlife.worker",
            "worker",
            "--pool",
            "solo",
        ],
        "tokenlife": [sys.executable, "-m", "tokenlife.cli", "worker", "--pool", "solo"],
    }[command]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["celery", "tokenlife"])
@pytest.mark.parametrize(
    ("change", "integrations", "message"),
    [
        pytest.param(
            {"TOKENLIFE_ENCRYPTION_KEYS": "not-a-key"},
            None,
            "TOKENLIFE_ENCRYPTION_KEYS: key #1 is not a Fernet key",
            id="malformed-key",
        ),
        pytest.param(
            {"TOKENLIFE_ENCRYPTION_KEYS": ""},
            None,
            "TOKENLIFE_ENCRYPTION_KEYS is not set",
            id="no-key",
        ),
        pytest.param(
            {"TOKENLIFE_INTEGRATIONS_FILE": "/nonexistent/integrations.toml"},
            None,
            "/nonexistent/integrations.toml does not exist",
            id="missing-file",
        ),
        pytest.param(
            {},
            CUSTOM_WITHOUT_TOKEN_URL,
            "a custom provider needs token_url",
            id="custom-without-token-url",
        ),
        pytest.param(
            {},
            SECRET_FROM_UNSET_VARIABLE,
            "client_secret_env names TOKENLIFE_TEST_SURELY_UNSET, which is unset",
            id="unset-secret-variable",
        ),
        pytest.param(
            {"TOKENLIFE_MINIMUM_ACCESS_TOKEN_ONLY_LIFETIME_DAYS": "-1"},
            None,
            "TOKENLIFE_MINIMUM_ACCESS_TOKEN_ONLY_LIFETIME_DAYS",
            id="negative-days",
        ),
    ],
)
def test_worker_refuses_to_start(
    settings: Settings,
    tmp_path: Path,
    command: str,
    change: dict[str, str],
    integrations: str | None,
    message: str,
) -> None:
    env = worker_environment(settings)
    env["TOKENLIFE_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    if integrations is not None:
        path = tmp_path / "integrations.toml"
        path.write_text(integrations)
        env["TOKENLIFE_INTEGRATIONS_FILE"] = str(path)
    env.update(change)

    result = start_worker(env, tmp_path, command)

    # Invalid settings exit 1 (docs/cli.md), in one JSON log line: the output is no terminal.
    assert result.returncode == 1, result.stderr[-2000:]
    # `celery` itself warns about root (this machine's tests run as root) before tokenlife
    # is asked to configure logging; `tokenlife worker` configures it first.
    text = [line for line in result.stderr.splitlines() if line.strip()]
    if command == "celery":
        text = [line for line in text if line.startswith("{")]
    logged = [json.loads(line) for line in text]
    [refusal] = [x for x in logged if x["level"] == "error"]
    assert refusal["message"].startswith("refusing to start: ")
    assert message in refusal["message"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["worker", "beat", "api", "run"])
def test_every_service_refuses_bad_settings_alike_on_a_terminal(
    settings: Settings, tmp_path: Path, command: str
) -> None:
    env = {**worker_environment(settings), "TOKENLIFE_LOG_FORMAT": "console"}
    env["TOKENLIFE_HTTP_TIMEOUT_SECONDS"] = "-1"
    result = subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", command],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "Error: refusing to start: invalid settings: TOKENLIFE_HTTP_TIMEOUT_SECONDS: "
        "Input should be greater than 0"
    ]
