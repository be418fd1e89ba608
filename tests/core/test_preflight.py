"""Preflight: each configuration mistake is found, with its fix; a correct configuration
of every catalogued provider gives no finding at all."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from tokenlife.core.preflight import Finding, check_integration
from tokenlife.core.presets import Preset
from tokenlife.core.provider_facts import ProviderFacts
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

PRESETS = load_presets()
REDIRECT = "https://app.example.com/oauth/callback"


def correct_config(preset: Preset, **overrides: Any) -> dict[str, Any]:
    """What a careful operator writes: required scopes, placeholders, an HTTPS callback."""
    urls = f"{preset.authorize_url or ''} {preset.token_url or ''}"
    needed = set(re.findall(r"\{([a-z_]+)\}", urls)) - set(preset.placeholders)
    config: dict[str, Any] = {
        "provider": preset.name,
        "client_id": "client",
        "client_secret": "secret",
        "redirect_uri": REDIRECT,
        "scopes": [r.scope for r in preset.requires if r.scope],
        "placeholders": {name: "example" for name in sorted(needed)},
    }
    if preset.name == "custom":
        config |= {
            "authorize_url": "https://idp.example.com/authorize",
            "token_url": "https://idp.example.com/token",
            "extra_authorization_params": {"prompt": "consent"},
        }
    return config | overrides


def findings(config: dict[str, Any], preset: Preset | None = None,
             discovery: dict[str, Any] | None = None) -> list[Finding]:  # fmt: skip
    parsed = IntegrationConfig.model_validate(config)
    chosen = preset or PRESETS[parsed.provider]
    integration = resolve("crm", parsed, chosen, "secret", 30.0)
    return check_integration(integration, PRESETS, discovery, default_minimum_days=30.0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_correct_configuration_of_each_provider_has_no_finding(name: str) -> None:
    assert findings(correct_config(PRESETS[name])) == []


def codes(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.severity, f.code) for f in found]


GOOGLE_URLS = {
    "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
    "token_url": "https://oauth2.googleapis.com/token",
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            correct_config(PRESETS["custom"], **GOOGLE_URLS),
            [
                ("error", "use_catalogued_provider"),
                ("error", "refresh_token_requirement_missing"),
            ],
            id="custom-at-google-endpoints",
        ),
        pytest.param(
            correct_config(
                PRESETS["google"], extra_authorization_params={"prompt": "select_account"}
            ),
            [("error", "refresh_token_requirement_missing")],
            id="google-prompt-select-account",
        ),
        pytest.param(
            correct_config(PRESETS["google"], extra_authorization_params={"access_type": "online"}),
            [("error", "refresh_token_requirement_missing")],
            id="google-access-type-online",
        ),
        pytest.param(
            correct_config(PRESETS["custom"], extra_authorization_params={}),
            [("error", "offline_access_without_consent")],
            id="custom-prompt-select-account",
        ),
        pytest.param(
            correct_config(
                PRESETS["custom"],
                scopes=["openid"],
                extra_scopes=["offline_access"],
                extra_authorization_params={},
            ),
            [("error", "offline_access_without_consent")],
            id="custom-offline-access-without-consent",
        ),
        pytest.param(
            correct_config(PRESETS["custom"], scopes=["openid"]),
            [("warning", "refresh_token_requirement_missing")],
            id="custom-without-offline-access",
        ),
        pytest.param(
            correct_config(PRESETS["google"], redirect_uri="http://app.example.com/cb"),
            [("error", "redirect_uri_not_https")],
            id="redirect-uri-http",
        ),
        pytest.param(
            correct_config(PRESETS["google"], redirect_uri="http://localhost:8080/cb"),
            [],
            id="redirect-uri-http-localhost-is-fine",
        ),
        pytest.param(
            correct_config(PRESETS["microsoft"], minimum_access_token_only_lifetime_days=0.01),
            [("error", "threshold_below_access_token_lifetime")],
            id="threshold-below-microsoft-lifetime",
        ),
        pytest.param(
            correct_config(PRESETS["microsoft"], minimum_access_token_only_lifetime_days=7),
            [],
            id="threshold-above-lifetime-is-fine",
        ),
    ],
)
def test_each_mistake_is_found(config: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = findings(config)
    assert codes(found) == expected
    assert all(f.fix and f.message for f in found)


def test_the_custom_at_google_finding_says_use_google_first() -> None:
    found = findings(correct_config(PRESETS["custom"], **GOOGLE_URLS))
    assert found[0].fix == 'Use provider "google".'
    assert "access_type=offline" in found[1].message


def with_pkce(support: str) -> Preset:
    custom = PRESETS["custom"]
    facts = ProviderFacts(values={"pkce": support}, sources={"pkce": "https://example.com/pkce"})
    return replace(custom, facts=facts)


@pytest.mark.parametrize(
    ("support", "pkce", "expected"),
    [
        ("unsupported", True, [("error", "pkce_unsupported")]),
        ("unsupported", False, []),
        ("required", False, [("error", "pkce_required")]),
        ("required", True, []),
        ("supported", False, []),
    ],
)
def test_pkce_against_what_the_provider_supports(
    support: str, pkce: bool, expected: list[tuple[str, str]]
) -> None:
    found = findings(correct_config(PRESETS["custom"], pkce=pkce), preset=with_pkce(support))
    assert codes(found) == expected


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"scopes_supported": ["openid", "offline_access"],
          "grant_types_supported": ["authorization_code", "refresh_token"]}, []),
        ({"scopes_supported": ["openid"],
          "grant_types_supported": ["authorization_code", "refresh_token"]},
         [("warning", "discovery_without_offline_access")]),
        ({"scopes_supported": ["openid", "offline_access"],
          "grant_types_supported": ["authorization_code"]},
         [("warning", "discovery_without_refresh_token_grant")]),
        ({"scopes_supported": ["openid", "offline_access"]},  # RFC 8414 default excludes it
         [("warning", "discovery_without_refresh_token_grant")]),
    ],
)  # fmt: skip
def test_discovery_document_checks(
    document: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    config = correct_config(PRESETS["custom"], scopes=["openid", "offline_access"])
    assert codes(findings(config, discovery=document)) == expected


CUSTOM_OFFLINE = {"scopes": ["openid", "offline_access"]}


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        pytest.param(None, "prompt=select_account (the custom default)", id="custom-default"),
        pytest.param("select_account", "prompt=select_account (the custom default)",
                     id="select-account-spelt-out"),
        pytest.param("login", "prompt=login.", id="login"),
        pytest.param("none", "prompt=none.", id="none"),
        pytest.param("", "no prompt", id="no-prompt"),
    ],
)  # fmt: skip
def test_offline_access_without_consent_names_the_prompt_sent(
    prompt: str | None, named: str
) -> None:
    params = {} if prompt is None else {"prompt": prompt}
    config = correct_config(PRESETS["custom"], extra_authorization_params=params, **CUSTOM_OFFLINE)
    found = findings(config)
    assert codes(found) == [("error", "offline_access_without_consent")]
    assert named in found[0].message
    assert "OpenID Connect Core §11" in found[0].message
    assert found[0].fix.startswith('Set extra_authorization_params.prompt = "consent"')
    assert found[0].source == (
        "https://openid.net/specs/openid-connect-core-1_0.html#OfflineAccess"
    )


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(correct_config(PRESETS["custom"], extra_authorization_params={
            "prompt": "consent select_account"}, **CUSTOM_OFFLINE), id="consent-in-a-list"),
        pytest.param(correct_config(PRESETS["custom"], scopes=["openid"],
                                    extra_authorization_params={"prompt": "consent"}),
                     id="no-offline-access-requested"),
        pytest.param(correct_config(PRESETS["microsoft"]), id="a-catalogued-vendor"),
        pytest.param(correct_config(PRESETS["custom"], **GOOGLE_URLS,
                                    extra_authorization_params={}, **CUSTOM_OFFLINE),
                     id="custom-at-google-endpoints-gets-google-rules"),
    ],
)  # fmt: skip
def test_offline_access_without_consent_only_where_oidc_rules_decide(
    config: dict[str, Any],
) -> None:
    assert "offline_access_without_consent" not in [f.code for f in findings(config)]


@pytest.mark.parametrize(
    ("prompt", "supported", "fix"),
    [
        # The seed's story: a certified server that supports only none, login and consent.
        pytest.param(None, ["none", "login", "consent"],
                     'Set extra_authorization_params.prompt = "consent".', id="custom-default"),
        pytest.param("login select_account", ["login"],
                     'Set extra_authorization_params.prompt = "login".', id="no-consent-offered"),
        pytest.param("consent", [], "Remove prompt", id="none-offered"),
        # prompt=none would fail every interactive connect: never the advice
        pytest.param("select_account", ["none", "login"],
                     'Set extra_authorization_params.prompt = "login".', id="none-not-advised"),
        pytest.param("select_account", ["none"], "Remove prompt", id="only-none"),
    ],
)  # fmt: skip
def test_a_prompt_value_the_issuer_does_not_list_is_an_error(
    prompt: str | None, supported: list[str], fix: str
) -> None:
    params = {} if prompt is None else {"prompt": prompt}
    config = correct_config(PRESETS["custom"], scopes=["openid"], extra_authorization_params=params)
    document = {
        "scopes_supported": ["openid", "offline_access"],
        "prompt_values_supported": supported,
        "grant_types_supported": ["authorization_code", "refresh_token"],
    }
    found = [f for f in findings(config, discovery=document) if f.severity == "error"]
    assert codes(found) == [("error", "prompt_value_unsupported")]
    assert found[0].fix.startswith(fix)
    assert "invalid_request" in found[0].message


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"prompt_values_supported": ["none", "login", "consent", "select_account"]},
                     id="listed"),
        pytest.param({}, id="not-published"),
    ],
)  # fmt: skip
def test_prompt_values_pass_when_listed_or_unpublished(document: dict[str, Any]) -> None:
    config = correct_config(PRESETS["custom"], scopes=["openid", "offline_access"])
    document |= {"scopes_supported": ["openid", "offline_access"],
                 "grant_types_supported": ["authorization_code", "refresh_token"]}  # fmt: skip
    assert codes(findings(config, discovery=document)) == []
