"""The authorization request (RFC 6749 §4.1.1) and token request bodies, per provider preset."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tokenlife.core import pkce
from tokenlife.core.authorization import build_authorization_request
from tokenlife.core.grants import authorization_code_request, refresh_token_request
from tokenlife.core.integration import Integration
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

NOW = 1_700_000_000.0
STATE = "state-3b9c2f"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "https://app.example.com/oauth/callback"
SECRET = "client-secret-7d1e"
GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
CUSTOM_AUTHORIZE = "https://auth.example.com/oauth2/authorize"
CUSTOM_TOKEN = "https://auth.example.com/oauth2/token"


def integration(provider: str, **config: Any) -> Integration:
    if provider == "custom":
        config = {"authorize_url": CUSTOM_AUTHORIZE, "token_url": CUSTOM_TOKEN, **config}
    settings = IntegrationConfig(
        provider=provider, client_id="client-id", redirect_uri=REDIRECT, **config
    )
    return resolve("crm", settings, load_presets()[provider], SECRET, 30.0)


def query(url: str) -> dict[str, str]:
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"repeated parameter in {url}"
    return dict(pairs)


def endpoint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@pytest.mark.parametrize(
    ("provider", "config", "authorize_url", "expected", "absent"),
    [
        pytest.param(
            "google",
            {"scopes": ["openid", "email"]},
            GOOGLE_AUTHORIZE,
            {"access_type": "offline", "prompt": "consent", "scope": "openid email"},
            set(),
            id="google",
        ),
        pytest.param(
            "google",
            {"scopes": ["openid"], "extra_authorization_params": {"prompt": "select_account"}},
            GOOGLE_AUTHORIZE,
            {"access_type": "offline", "prompt": "select_account", "scope": "openid"},
            set(),
            id="google-prompt-overridden",
        ),
        pytest.param(
            "google",
            {"scopes": ["openid"], "extra_authorization_params": {"login_hint": "a@example.com"}},
            GOOGLE_AUTHORIZE,
            {"access_type": "offline", "prompt": "consent", "login_hint": "a@example.com"},
            set(),
            id="google-extra-param-added",
        ),
        pytest.param(
            "google",
            {"scopes": ["openid"], "authorize_url": "https://proxy.example.com/auth"},
            "https://proxy.example.com/auth",
            {"access_type": "offline", "prompt": "consent"},
            set(),
            id="google-url-override-keeps-params",
        ),
        pytest.param(
            "microsoft",
            {"scopes": ["openid", "User.Read"]},
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            {"scope": "openid User.Read offline_access"},
            {"access_type", "prompt"},
            id="microsoft-common",
        ),
        pytest.param(
            "microsoft",
            {"scopes": ["offline_access", "openid"]},
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            {"scope": "offline_access openid"},
            {"access_type", "prompt"},
            id="microsoft-offline-access-configured",
        ),
        pytest.param(
            "microsoft",
            {"scopes": ["openid"], "extra_scopes": ["offline_access", "Mail.Read"]},
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            {"scope": "openid offline_access Mail.Read"},
            set(),
            id="microsoft-offline-access-in-extra-scopes",
        ),
        pytest.param(
            "microsoft",
            {"scopes": ["openid", "openid"], "extra_scopes": ["openid"]},
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            {"scope": "openid offline_access"},
            set(),
            id="microsoft-duplicates-dropped",
        ),
        pytest.param(
            "microsoft",
            {"scopes": ["openid"], "tenant": "contoso.onmicrosoft.com"},
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
            {"scope": "openid offline_access"},
            set(),
            id="microsoft-tenant-domain",
        ),
        pytest.param(
            "microsoft",
            {"scopes": ["openid"], "tenant": "9188040d-6c67-4c5b-b112-36a304b66dad"},
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad"
            "/oauth2/v2.0/authorize",
            {"scope": "openid offline_access"},
            set(),
            id="microsoft-tenant-guid",
        ),
        pytest.param(
            "custom",
            {"scopes": ["openid", "profile"]},
            CUSTOM_AUTHORIZE,
            {"prompt": "select_account", "scope": "openid profile"},
            {"access_type"},
            id="custom",
        ),
        pytest.param(
            "custom",
            {"scopes": ["openid"], "extra_authorization_params": {"prompt": "consent"}},
            CUSTOM_AUTHORIZE,
            {"prompt": "consent"},
            {"access_type"},
            id="custom-prompt-overridden",
        ),
        pytest.param(
            "custom",
            {"scopes": ["read"], "authorize_url": "https://auth.example.com/authorize?realm=acme"},
            "https://auth.example.com/authorize",
            {"realm": "acme", "prompt": "select_account", "scope": "read"},
            {"access_type"},
            id="custom-url-with-query",
        ),
    ],
)
def test_authorization_url(
    provider: str,
    config: dict[str, Any],
    authorize_url: str,
    expected: dict[str, str],
    absent: set[str],
) -> None:
    request = build_authorization_request(
        integration(provider, **config), "user-1", STATE, None, NOW
    )
    params = query(request.url)
    assert endpoint(request.url) == authorize_url
    assert params["response_type"] == "code"
    assert params["client_id"] == "client-id"
    assert params["redirect_uri"] == REDIRECT
    assert params["state"] == STATE
    assert {k: params.get(k) for k in expected} == expected
    assert not absent & set(params), "a parameter that must not be sent"
    # Offline access is a scope only at Microsoft; the custom preset merely diagnoses it.
    expected_count = 1 if provider == "microsoft" else 0
    assert params["scope"].split().count("offline_access") == expected_count


@pytest.mark.parametrize(
    ("authorize_url", "prefix"),
    [
        pytest.param(CUSTOM_AUTHORIZE, CUSTOM_AUTHORIZE + "?response_type=", id="no-query"),
        pytest.param(
            "https://auth.example.com/authorize?realm=acme",
            "https://auth.example.com/authorize?realm=acme&response_type=",
            id="with-query",
        ),
    ],
)
def test_query_separator(authorize_url: str, prefix: str) -> None:
    custom = integration("custom", scopes=["openid"], authorize_url=authorize_url)
    request = build_authorization_request(custom, "user-1", STATE, VERIFIER, NOW)
    assert request.url.startswith(prefix)
    assert request.url.count("?") == 1


@pytest.mark.parametrize(
    ("tenant", "authorize_url", "token_url"),
    [
        pytest.param(
            None,
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            id="default-common",
        ),
        pytest.param(
            "organizations",
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
            id="organizations",
        ),
        pytest.param(
            "contoso.onmicrosoft.com",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            id="tenant-domain",
        ),
    ],
)
def test_microsoft_tenant_fills_both_endpoints(
    tenant: str | None, authorize_url: str, token_url: str
) -> None:
    config: dict[str, Any] = {"scopes": ["openid"]}
    if tenant is not None:
        config["tenant"] = tenant
    microsoft = integration("microsoft", **config)
    assert microsoft.authorize_url == authorize_url
    assert microsoft.token_url == token_url
    assert "{" not in microsoft.authorize_url + microsoft.token_url


@pytest.mark.parametrize(
    ("provider", "pkce_setting", "verifier", "sends_challenge"),
    [
        pytest.param("google", None, VERIFIER, True, id="google-preset-on"),
        pytest.param("microsoft", None, VERIFIER, True, id="microsoft-preset-on"),
        pytest.param("custom", None, VERIFIER, True, id="custom-preset-on"),
        pytest.param("custom", True, VERIFIER, True, id="explicit-on"),
        pytest.param("google", False, VERIFIER, False, id="google-off"),
        pytest.param("custom", False, VERIFIER, False, id="custom-off"),
        pytest.param("custom", None, None, False, id="on-without-verifier"),
    ],
)
def test_pkce_parameters(
    provider: str, pkce_setting: bool | None, verifier: str | None, sends_challenge: bool
) -> None:
    configured = integration(provider, scopes=["openid"], pkce=pkce_setting)
    request = build_authorization_request(configured, "user-1", STATE, verifier, NOW)
    params = query(request.url)
    assert params["state"] == STATE
    assert request.state == STATE
    if sends_challenge:
        assert params["code_challenge"] == CHALLENGE
        assert params["code_challenge_method"] == pkce.METHOD == "S256"
        assert request.pending.verifier == verifier
    else:
        assert "code_challenge" not in params
        assert "code_challenge_method" not in params
        assert request.pending.verifier is None


@pytest.mark.parametrize(
    ("provider", "verifier", "expected_params"),
    [
        pytest.param(
            "google",
            VERIFIER,
            {
                "response_type": "code",
                "client_id": "client-id",
                "redirect_uri": REDIRECT,
                "scope": "openid email",
                "access_type": "offline",
                "prompt": "consent",
                "code_challenge_method": "S256",
            },
            id="google-pkce",
        ),
        pytest.param(
            "microsoft",
            None,
            {
                "response_type": "code",
                "client_id": "client-id",
                "redirect_uri": REDIRECT,
                "scope": "openid email offline_access",
            },
            id="microsoft-no-verifier",
        ),
        pytest.param(
            "custom",
            VERIFIER,
            {
                "response_type": "code",
                "client_id": "client-id",
                "redirect_uri": REDIRECT,
                "scope": "openid email",
                "prompt": "select_account",
                "code_challenge_method": "S256",
            },
            id="custom-pkce",
        ),
    ],
)
def test_pending_authorization(
    provider: str, verifier: str | None, expected_params: dict[str, str]
) -> None:
    configured = integration(provider, scopes=["openid", "email"])
    request = build_authorization_request(configured, "tenant:user-1", STATE, verifier, NOW)
    pending = request.pending
    sent = dict(expected_params, state=STATE)
    if "code_challenge_method" in expected_params:
        sent["code_challenge"] = pkce.challenge(VERIFIER)
    assert dict(pending.params) == sent  # exactly what the URL carried
    assert pending.integration == "crm"
    assert pending.connection_id == "tenant:user-1"
    assert pending.redirect_uri == REDIRECT
    assert pending.created_at == NOW
    assert pending.scopes == tuple(expected_params["scope"].split())
    assert pending.verifier == verifier
    public = pending.public_dict()
    assert "verifier" not in public
    assert public["params"] == sent
    assert VERIFIER not in repr(pending)
    assert VERIFIER not in str(public)


def test_no_scope_parameter_without_scopes() -> None:
    request = build_authorization_request(integration("custom"), "user-1", STATE, None, NOW)
    assert "scope" not in query(request.url)
    assert "scope" not in request.pending.params
    assert request.pending.scopes == ()


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")


@pytest.mark.parametrize(
    ("provider", "config", "verifier", "form", "headers"),
    [
        pytest.param(
            "google",
            {},
            VERIFIER,
            {
                "grant_type": "authorization_code",
                "code": "the-code",
                "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER,
                "client_id": "client-id",
                "client_secret": SECRET,
            },
            {"Accept": "application/json"},
            id="google-post",
        ),
        pytest.param(
            "microsoft",
            {},
            None,
            {
                "grant_type": "authorization_code",
                "code": "the-code",
                "redirect_uri": REDIRECT,
                "client_id": "client-id",
                "client_secret": SECRET,
            },
            {"Accept": "application/json"},
            id="microsoft-post-no-verifier",
        ),
        pytest.param(
            "custom",
            {},
            VERIFIER,
            {
                "grant_type": "authorization_code",
                "code": "the-code",
                "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER,
            },
            {"Accept": "application/json", "Authorization": basic("client-id", SECRET)},
            id="custom-basic",
        ),
        pytest.param(
            "custom",
            {"token_endpoint_auth_method": "none"},
            VERIFIER,
            {
                "grant_type": "authorization_code",
                "code": "the-code",
                "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER,
                "client_id": "client-id",
            },
            {"Accept": "application/json"},
            id="custom-public-client",
        ),
    ],
)
def test_authorization_code_request(
    provider: str,
    config: dict[str, Any],
    verifier: str | None,
    form: dict[str, str],
    headers: dict[str, str],
) -> None:
    configured = integration(provider, scopes=["openid"], **config)
    request = authorization_code_request(configured, "the-code", REDIRECT, verifier)
    assert request.url == configured.token_url
    assert request.form == form
    assert request.headers == headers
    assert SECRET not in repr(request)


@pytest.mark.parametrize(
    ("provider", "config", "form", "headers"),
    [
        pytest.param(
            "google",
            {},
            {
                "grant_type": "refresh_token",
                "refresh_token": "the-refresh-token",
                "client_id": "client-id",
                "client_secret": SECRET,
            },
            {"Accept": "application/json"},
            id="google-post",
        ),
        pytest.param(
            "custom",
            {},
            {"grant_type": "refresh_token", "refresh_token": "the-refresh-token"},
            {"Accept": "application/json", "Authorization": basic("client-id", SECRET)},
            id="custom-basic",
        ),
        pytest.param(
            "microsoft",
            {"token_endpoint_auth_method": "client_secret_basic"},
            {"grant_type": "refresh_token", "refresh_token": "the-refresh-token"},
            {"Accept": "application/json", "Authorization": basic("client-id", SECRET)},
            id="microsoft-basic-override",
        ),
    ],
)
def test_refresh_token_request(
    provider: str, config: dict[str, Any], form: dict[str, str], headers: dict[str, str]
) -> None:
    configured = integration(provider, scopes=["openid"], **config)
    request = refresh_token_request(configured, "the-refresh-token")
    assert request.url == configured.token_url
    assert request.form == form  # §6: no scope, so the original grant is kept
    assert request.headers == headers
    assert "the-refresh-token" not in repr(request)
    assert SECRET not in repr(request)
