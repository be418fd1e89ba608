"""The deployment files, checked without Docker: docker-compose.yml against the Compose
Specification's JSON schema and our own rules, the Dockerfile's facts, and that the
examples beside them name real settings and a valid integration."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from tests.deploy import compose
from tokenlife.integrations import load_integrations_file
from tokenlife.providers import load_presets
from tokenlife.runtime import SHUTDOWN_SAVE_SECONDS
from tokenlife.settings import Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return compose.load_raw()


@pytest.fixture(scope="module")
def services(document: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = compose.interpolate_all(document, {})["services"]
    return resolved


def test_the_compose_file_is_valid_against_the_compose_specification(
    document: dict[str, Any],
) -> None:
    schema = compose.load_schema()
    assert "170098ba07d9f53c383a41bfd4c5166b0a4529a6" in schema["$comment"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(document)


def test_the_schema_check_catches_a_wrong_file(document: dict[str, Any]) -> None:
    broken = {**document, "services": {**document["services"], "api": {"ports": "8080"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(compose.load_schema()).validate(broken)


def test_redis_keeps_an_append_only_file_and_never_evicts(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in command
    volume, _, mount = redis["volumes"][0].partition(":")
    assert mount == "/data" and volume in compose.load_raw()["volumes"]  # named, not a bind


def test_two_workers_without_beat_one_beat_and_the_api_on_8080(
    services: dict[str, Any],
) -> None:
    assert services["worker"]["command"] == ["worker", "--no-beat"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["beat"]["command"] == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert services["api"]["command"] == ["api"]
    # Loopback only: a TLS reverse proxy faces the network (docs/deployment.md).
    assert services["api"]["ports"] == ["127.0.0.1:8080:8080"]
    assert compose.environment(services["api"])["TOKENLIFE_API_HOST"] == "0.0.0.0"
    for name in ("worker", "beat", "api"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["env_file"] == ".env"
        assert compose.environment(services[name])["TOKENLIFE_REDIS_URL"] == (
            "redis://redis:6379/0"
        )


def test_the_rabbitmq_profile_adds_the_broker_and_only_it(document: dict[str, Any]) -> None:
    plain = compose.active_services(document, set())
    with_rabbitmq = compose.active_services(document, {"rabbitmq"})
    assert set(with_rabbitmq) - set(plain) == {"rabbitmq"}
    assert "rabbitmq" not in plain
    # The switch of broker is in .env.example, commented out, with the profile.
    optional = compose.commented_settings(compose.ENV_EXAMPLE.read_text(), about="RabbitMQ")
    assert set(optional) == {"COMPOSE_PROFILES", "RABBITMQ_PASSWORD", "TOKENLIFE_BROKER_URL"}
    assert optional["COMPOSE_PROFILES"] == "rabbitmq"
    assert optional["TOKENLIFE_BROKER_URL"].startswith("amqp://tokenlife:")
    assert "@rabbitmq:5672/" in optional["TOKENLIFE_BROKER_URL"]


def test_the_image_builds_in_two_stages_and_runs_as_a_user_without_rights() -> None:
    stages = compose.dockerfile_stages()
    assert len(stages) >= 2
    assert "slim" in stages[-1][0][1]
    users = compose.final_stage("USER")
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert compose.exec_form(compose.final_stage("ENTRYPOINT")[-1]) == ["tokenlife"]


def test_the_image_checks_its_health_on_healthz_without_curl() -> None:
    (check,) = compose.final_stage("HEALTHCHECK")
    _, _, command = check.partition(" CMD ")
    argv = compose.exec_form(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]


def test_the_env_example_names_only_real_settings() -> None:
    text = compose.ENV_EXAMPLE.read_text()
    names = {**compose.read_env_file(text), **compose.commented_settings(text)}
    settings = {f"TOKENLIFE_{field.upper()}" for field in Settings.model_fields}
    ours = {name for name in names if name.startswith("TOKENLIFE_")}
    assert ours and ours <= settings, ours - settings


def test_the_integrations_example_is_a_valid_integrations_file() -> None:
    # Its secret is one of the values README.md says to fill in.
    secrets = {name: "from-dot-env" for name in compose.readme_values()}
    loaded = load_integrations_file(
        compose.ROOT / "integrations.example.toml", load_presets(), secrets
    )
    assert loaded["google-drive"][1] == "from-dot-env"


def _seconds(duration: str) -> float:
    """A Compose duration ("1m30s", "45s": Go's time.ParseDuration units)."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("name", ["api", "worker"])
def test_a_refresh_in_flight_is_saved_before_docker_kills_the_process(
    services: dict[str, Any], name: str
) -> None:
    # SIGTERM, then SIGKILL after stop_grace_period (Docker's default: 10 s). The API's
    # shutdown waits TOKENLIFE_HTTP_TIMEOUT_SECONDS + SHUTDOWN_SAVE_SECONDS (runtime.py),
    # a worker's warm shutdown one token request and its save.
    service = services[name]
    declared = {
        **compose.read_env_file(compose.ENV_EXAMPLE.read_text()),
        **compose.environment(service),
    }
    timeout = float(
        declared.get("TOKENLIFE_HTTP_TIMEOUT_SECONDS")
        or Settings.model_fields["http_timeout_seconds"].default
    )
    grace = _seconds(service.get("stop_grace_period", "10s"))
    assert grace >= timeout + SHUTDOWN_SAVE_SECONDS, (name, grace, timeout)


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A}", {"A": "v"}, "v"),
        ("$A/b", {"A": "v"}, "v/b"),
        ("celery@$$HOSTNAME", {}, "celery@$HOSTNAME"),
        ("${A:+on}", {"A": "v"}, "on"),
    ],
)
def test_interpolation_as_compose_does_it(
    text: str, variables: dict[str, str], expected: str
) -> None:
    assert compose.interpolate(text, variables) == expected
