"""Following README.md's Deploy section to the letter starts the stack: the values it says
to fill in are all the services need (the example integration's client secret among them),
and every value .env.example leaves empty is one of them."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.deploy import compose
from tests.deploy.host_stack import HostStack
from tokenlife.errors import ConfigurationError
from tokenlife.runtime import load_config
from tokenlife.settings import Settings
from tokenlife.web.auth import parse_api_keys

PLAUSIBLE = {
    "TOKENLIFE_ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
    "TOKENLIFE_API_KEYS": lambda: secrets.token_urlsafe(32),
}


def filled_env_example(names: list[str]) -> dict[str, str]:
    values = compose.read_env_file(compose.ENV_EXAMPLE.read_text())
    for name in names:
        values[name] = PLAUSIBLE.get(name, lambda: secrets.token_urlsafe(16))()
    return values


def service_environments(tmp_path: Path, dot_env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each tokenlife service's environment as Compose gives it (not started)."""
    stack = HostStack(tmp_path, dot_env, set(), "amqp://unused")
    stack.build()
    return {p.name: p.env for p in stack.processes if p.name != "redis"}


def check_starts(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What every service checks before it runs: settings, keys, integrations (raises
    ConfigurationError where a service would refuse to start)."""
    for name in [k for k in os.environ if k.startswith("TOKENLIFE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    parse_api_keys(settings.api_keys)
    asyncio.run(load_config(settings, environ=env))
    return settings


def test_the_readme_names_every_value_left_empty_and_the_compose_header_too() -> None:
    names = compose.readme_values()
    assert {"TOKENLIFE_ENCRYPTION_KEYS", "TOKENLIFE_API_KEYS"} <= set(names)
    empty = {k for k, v in compose.read_env_file(compose.ENV_EXAMPLE.read_text()).items() if not v}
    assert empty == set(names)
    header = compose.COMPOSE_FILE.read_text().partition("\n\n")[0]
    example_header = compose.ENV_EXAMPLE.read_text().partition("\n\n")[0]
    for name in names:
        assert name in header and name in example_header, name


def test_the_values_the_readme_lists_are_enough_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environments = service_environments(tmp_path, filled_env_example(compose.readme_values()))
    assert set(environments) == {"worker-1", "worker-2", "beat-1", "api-1"}
    for env in environments.values():
        with monkeypatch.context() as patch:
            assert check_starts(env, patch).api_keys, "the API would refuse every /api/ call"


@pytest.mark.parametrize("left_out", compose.readme_values())
def test_leaving_out_any_of_them_stops_the_services_or_every_api_call(
    left_out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [n for n in compose.readme_values() if n != left_out]
    env = service_environments(tmp_path, filled_env_example(names))["worker-1"]
    if left_out == "TOKENLIFE_API_KEYS":
        # The services start (`tokenlife api` warns), but every /api/ call is refused.
        assert check_starts(env, monkeypatch).api_keys == ()
        return
    with pytest.raises(ConfigurationError):
        check_starts(env, monkeypatch)


@pytest.mark.parametrize(("password", "code"), [("", 1), ("s3cret", 127)])
def test_rabbitmq_refuses_to_start_without_a_password(password: str, code: int) -> None:
    # The service's entrypoint, run by sh as Docker would; past the check it execs the
    # image's docker-entrypoint.sh, which this machine lacks (127: not found).
    service = compose.interpolate_all(compose.load_raw(), {"RABBITMQ_PASSWORD": password})
    rabbitmq = service["services"]["rabbitmq"]
    env = {**compose.environment(rabbitmq), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*rabbitmq["entrypoint"], *rabbitmq["command"]], env=env, capture_output=True, text=True
    )
    assert result.returncode == code, result.stderr
    assert ("set RABBITMQ_PASSWORD" in result.stderr) == (code == 1)
