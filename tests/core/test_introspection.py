"""RFC 7662 introspection: the request as sent, the answer as read, the lifetime kept, and
where the endpoint comes from (the integrations file, the catalogue, discovery)."""

from __future__ import annotations

import base64
import dataclasses
import tomllib
from importlib import resources
from typing import Any

import pytest

from tokenlife.adapters.discovery import introspection_endpoint_from
from tokenlife.core.integration import Integration
from tokenlife.core.introspection import (
    FailureMemory,
    Introspection,
    insecure_introspection_url,
    introspection_request,
    parse_introspection_response,
    with_introspected_lifetime,
)
from tokenlife.core.presets import preset_from_mapping
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import InvalidResponseError
from tokenlife.integration_discovery import build_integration
from tokenlife.integrations import AuthMethod, IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.settings import Settings

NOW = 1_700_000_000.0
PRESETS = load_presets()


def integration(method: AuthMethod = "client_secret_basic") -> Integration:
    config = IntegrationConfig(
        provider="custom", client_id="app", client_secret="s3cret:/x",
        redirect_uri="https://app.example/cb", authorize_url="https://as.example/authorize",
        token_url="https://as.example/token", introspection_url="https://as.example/introspect",
        token_endpoint_auth_method=method,
    )  # fmt: skip
    return resolve("x", config, PRESETS["custom"], config.client_secret, 30)


def tokens(**fields: Any) -> TokenSet:
    base = TokenSet(access_token="at-opaque", token_type="Bearer", refresh_token="rt",
                    expires_at=None, lifetime_seconds=None, lifetime_source=None,
                    granted_scopes=None)  # fmt: skip
    return dataclasses.replace(base, **fields)


def test_the_request_carries_the_token_a_hint_and_the_token_endpoints_client_auth() -> None:
    request = introspection_request(integration(), "at-opaque")

    assert request.url == "https://as.example/introspect"
    assert request.form == {"token": "at-opaque", "token_type_hint": "access_token"}
    user = base64.b64decode(request.headers["Authorization"].removeprefix("Basic ")).decode()
    assert user == "app:s3cret%3A%2Fx"  # RFC 6749 §2.3.1: form-encoded before base64


def test_client_secret_post_puts_the_credentials_in_the_body() -> None:
    request = introspection_request(integration("client_secret_post"), "at-opaque")

    assert request.form["client_id"] == "app" and request.form["client_secret"] == "s3cret:/x"
    assert "Authorization" not in request.headers


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"active": true, "exp": 1700003600}', Introspection(True, 1700003600)),
        (200, b'{"active": true, "exp": 1700003600.7}', Introspection(True, 1700003600)),
        (200, b'{"active": true}', Introspection(True, None)),
        (200, b'{"active": true, "exp": "1700003600"}', Introspection(True, None)),
        (200, b'{"active": true, "exp": true}', Introspection(True, None)),
        (200, b'{"active": false}', Introspection(False, None)),
        # §2.2: an inactive token's other fields mean nothing.
        (200, b'{"active": false, "exp": 1700003600}', Introspection(False, None)),
    ],
)
def test_the_answer_is_read_as_rfc_7662_says(
    status: int, body: bytes, expected: Introspection
) -> None:
    assert parse_introspection_response(status, body) == expected


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>oops</html>"),
        (200, b"[1, 2]"),
        (200, b'{"exp": 1700003600}'),  # `active` is REQUIRED
        (200, b'{"active": "true"}'),
        (200, b"\xff\xfe"),
        (401, b'{"error": "invalid_client"}'),
        (400, b'{"active": true, "exp": 1700003600}'),
    ],
)
def test_an_unusable_answer_is_an_invalid_response(status: int, body: bytes) -> None:
    with pytest.raises(InvalidResponseError):
        parse_introspection_response(status, body)


def test_exp_becomes_the_token_sets_expiry() -> None:
    learned = with_introspected_lifetime(tokens(), Introspection(True, int(NOW) + 7200), NOW)

    assert learned is not None
    assert (learned.expires_at, learned.lifetime_seconds) == (NOW + 7200, 7200)
    assert learned.lifetime_source == "introspection"
    assert learned.access_token == "at-opaque" and learned.refresh_token == "rt"


@pytest.mark.parametrize(
    "exp",
    [
        pytest.param(None, id="missing"),
        pytest.param(int(NOW) - 10, id="past"),
        pytest.param(int(NOW) * 1000, id="milliseconds"),
    ],
)
def test_no_usable_exp_leaves_the_lifetime_unknown(exp: int | None) -> None:
    assert with_introspected_lifetime(tokens(), Introspection(True, exp), NOW) is None


def test_an_inactive_token_is_refused() -> None:
    with pytest.raises(InvalidResponseError, match="not active"):
        with_introspected_lifetime(tokens(), Introspection(False, None), NOW)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"introspection_endpoint": "https://as.example/i"}, "https://as.example/i"),
        ({"introspection_endpoint": "ftp://as.example/i"}, None),
        ({"introspection_endpoint": 5}, None),
        ({}, None),
    ],
)
def test_discovery_advertises_the_endpoint(document: dict[str, Any], expected: str | None) -> None:
    assert introspection_endpoint_from(document, "https://as.example", TOKEN_URL) == expected


TOKEN_URL = "https://tokens.example/token"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        pytest.param("http://as.example/i", "TLS", id="http"),
        pytest.param("https://elsewhere.example/i", "another host", id="other-host"),
        pytest.param("https://tokens.example/i", None, id="token-endpoint-host"),
        pytest.param("http://127.0.0.1:8080/i", "another host", id="loopback-other-host"),
    ],
)
def test_a_discovered_endpoint_must_be_https_on_the_issuers_or_token_endpoints_host(
    endpoint: str, expected: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    found = introspection_endpoint_from(
        {"introspection_endpoint": endpoint}, "https://as.example", TOKEN_URL
    )
    if expected is None:
        assert found == endpoint
    else:
        assert found is None
        assert expected in caplog.text and "ignored" in caplog.text


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://as.example/i", True),
        ("http://127.0.0.1:9/i", True),
        ("http://[::1]:9/i", True),
        ("http://localhost/i", True),
        ("http://as.example/i", False),
        ("http://127.0.0.1.evil.example/i", False),
    ],
)
def test_introspection_wants_tls_except_on_loopback(url: str, ok: bool) -> None:
    assert (insecure_introspection_url(url) is None) is ok


def test_a_failure_is_remembered_for_its_ttl_and_forgotten_on_success() -> None:
    memory = FailureMemory(ttl=600)
    key = ("x", "https://as.example/i")
    assert not memory.holds(key, NOW)
    memory.failed(key, NOW)
    assert memory.holds(key, NOW + 599)
    assert not memory.holds(("y", "https://as.example/i"), NOW)
    assert not memory.holds(key, NOW + 600)  # the period is over: asked again
    memory.failed(key, NOW)
    memory.succeeded(key)
    assert not memory.holds(key, NOW + 1)


def test_discovery_beats_the_catalogue_and_the_file_beats_both() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    custom = PRESETS["custom"]
    org_server = "https://as.example/oauth2/v1/introspect"
    preset = dataclasses.replace(
        custom, facts=dataclasses.replace(custom.facts, introspection_url=org_server)
    )
    table: dict[str, Any] = {"provider": "custom", "client_id": "app", "client_secret": "s",
             "redirect_uri": "https://app.example/cb",
             "issuer": "https://as.example/oauth2/aus1"}  # fmt: skip
    document = {
        "issuer": "https://as.example/oauth2/aus1",
        "authorization_endpoint": "https://as.example/oauth2/aus1/v1/authorize",
        "token_endpoint": "https://as.example/oauth2/aus1/v1/token",
        "introspection_endpoint": "https://as.example/oauth2/aus1/v1/introspect",
    }

    def built(doc: dict[str, Any] | None, **fields: str) -> str | None:
        config = IntegrationConfig.model_validate({**table, **fields})
        if doc is None:
            config = IntegrationConfig.model_validate(
                {**table, "issuer": None, "authorize_url": "https://as.example/a",
                 "token_url": "https://as.example/t", **fields}
            )  # fmt: skip
        return build_integration(settings, "x", config, preset, "s", doc).introspection_url

    assert built(document) == "https://as.example/oauth2/aus1/v1/introspect"
    assert built({**document, "introspection_endpoint": None}) == org_server
    assert built(None) == org_server
    mine = "https://as.example/mine"
    assert built(document, introspection_url=mine) == mine


def test_the_integrations_file_wins_over_discovery() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    table: dict[str, Any] = {"provider": "custom", "client_id": "app", "client_secret": "s",
             "redirect_uri": "https://app.example/cb", "issuer": "https://as.example"}  # fmt: skip
    document = {"issuer": "https://as.example", "authorization_endpoint": "https://as.example/a",
                "token_endpoint": "https://as.example/t",
                "introspection_endpoint": "https://as.example/discovered"}  # fmt: skip
    custom = PRESETS["custom"]

    mine = {**table, "introspection_url": "https://as.example/mine"}
    discovered = build_integration(
        settings, "x", IntegrationConfig.model_validate(table), custom, "s", document
    )
    configured = build_integration(
        settings, "x", IntegrationConfig.model_validate(mine), custom, "s", document
    )

    assert discovered.introspection_url == "https://as.example/discovered"
    assert configured.introspection_url == "https://as.example/mine"


@pytest.mark.parametrize(
    ("provider", "placeholders", "expected"),
    [
        ("salesforce", {}, "https://login.salesforce.com/services/oauth2/introspect"),
        ("okta", {"domain": "acme.okta.com"}, "https://acme.okta.com/oauth2/v1/introspect"),
        ("keycloak", {"domain": "id.acme.io", "realm": "main"},
         "https://id.acme.io/realms/main/protocol/openid-connect/token/introspect"),
        ("google", {}, None),
    ],
)  # fmt: skip
def test_the_catalogue_names_the_vendors_endpoint(
    provider: str, placeholders: dict[str, str], expected: str | None
) -> None:
    config = IntegrationConfig(provider=provider, client_id="app", client_secret="s",
                               redirect_uri="https://app.example/cb",
                               placeholders=placeholders)  # fmt: skip
    resolved = resolve("x", config, PRESETS[provider], "s", 30)
    assert resolved.introspection_url == expected


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"sources": "drop"}, "introspection_url", id="no-source"),
        pytest.param({"url": "http://{instance}/introspect"}, "introspection_url", id="http"),
    ],
)
def test_the_catalogue_wants_an_https_endpoint_with_its_source(
    change: dict[str, str], problem: str
) -> None:
    path = resources.files("tokenlife.providers").joinpath("salesforce.toml")
    data = tomllib.loads(path.read_text("utf-8"))
    if "sources" in change:
        del data["facts"]["sources"]["introspection_url"]
    if "url" in change:
        data["facts"]["introspection_url"] = change["url"]

    with pytest.raises(ValueError, match=problem):
        preset_from_mapping(data)
