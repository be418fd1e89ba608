"""The provider catalogue (providers/*.toml) and preset validation."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tokenlife.core.client_auth import METHODS
from tokenlife.core.presets import Preset, Requirement, preset_from_mapping
from tokenlife.providers import load_presets

SOURCE = "https://example.com/docs/offline"


def test_catalogue_names() -> None:
    presets = load_presets()
    assert {"google", "microsoft", "custom"} <= set(presets)
    assert all(name == preset.name for name, preset in presets.items())


@pytest.mark.parametrize(
    ("name", "auth_method", "offline_scopes", "params", "echoes", "placeholders"),
    [
        pytest.param(
            "google",
            "client_secret_post",
            (),
            {"access_type": "offline", "prompt": "consent"},
            False,
            {},
            id="google",
        ),
        pytest.param(
            "microsoft",
            "client_secret_post",
            ("offline_access",),
            {},
            False,
            {"tenant": "common"},
            id="microsoft",
        ),
        pytest.param(
            "custom",
            "client_secret_basic",
            (),
            {"prompt": "select_account"},
            True,
            {},
            id="custom",
        ),
    ],
)
def test_catalogue_entries(
    name: str,
    auth_method: str,
    offline_scopes: tuple[str, ...],
    params: dict[str, str],
    echoes: bool,
    placeholders: dict[str, str],
) -> None:
    preset = load_presets()[name]
    assert preset.token_endpoint_auth_method == auth_method
    assert preset.offline_scopes == offline_scopes
    assert dict(preset.authorization_params) == params
    assert preset.echoes_offline_scope is echoes
    assert dict(preset.placeholders) == placeholders
    assert preset.pkce is True
    assert preset.requires, "every preset feeds the diagnosis"
    assert (preset.authorize_url is None) == (preset.token_url is None) == (name == "custom")


@pytest.mark.parametrize("name", ["google", "microsoft", "custom"])
def test_every_requirement_and_source_is_cited(name: str) -> None:
    preset = load_presets()[name]
    for requirement in preset.requires:
        assert requirement.source.startswith("https://"), requirement
        assert requirement.why
        assert (requirement.scope is None) != (requirement.param is None)
        assert (requirement.param is None) == (requirement.value is None)
    for source in preset.sources.values():
        assert source.startswith("https://")


@pytest.mark.parametrize(
    ("name", "host", "matches"),
    [
        ("google", "accounts.google.com", True),
        ("google", "oauth2.googleapis.com", True),
        ("google", "Accounts.Google.Com", True),
        ("google", "evil-accounts.google.com", False),
        ("google", "google.com", False),
        ("microsoft", "login.microsoftonline.com", True),
        ("microsoft", "eu.login.microsoftonline.com", True),
        ("microsoft", "login.live.com", True),
        ("microsoft", "microsoftonline.com", False),
        ("custom", "auth.example.com", False),
    ],
)
def test_matches_host(name: str, host: str, matches: bool) -> None:
    assert load_presets()[name].matches_host(host) is matches


@pytest.mark.parametrize(
    ("name", "scope", "matches"),
    [
        ("google", "https://www.googleapis.com/auth/drive.readonly", True),
        ("google", "openid", False),
        ("microsoft", "https://graph.microsoft.com/User.Read", True),
        ("microsoft", "https://outlook.office.com/IMAP.AccessAsUser.All", True),
        ("microsoft", "offline_access", False),
        ("custom", "https://www.googleapis.com/auth/drive", False),
    ],
)
def test_matches_scope(name: str, scope: str, matches: bool) -> None:
    assert load_presets()[name].matches_scope(scope) is matches


@pytest.mark.parametrize(
    ("scopes", "params", "requirement", "satisfied"),
    [
        (("openid", "offline_access"), {}, Requirement("w", SOURCE, scope="offline_access"), True),
        (("openid",), {}, Requirement("w", SOURCE, scope="offline_access"), False),
        (
            (),
            {"prompt": "consent"},
            Requirement("w", SOURCE, param="prompt", value="consent"),
            True,
        ),
        (
            (),
            {"prompt": "login consent"},
            Requirement("w", SOURCE, param="prompt", value="consent"),
            True,
        ),
        ((), {"prompt": "none"}, Requirement("w", SOURCE, param="prompt", value="consent"), False),
        ((), {}, Requirement("w", SOURCE, param="prompt", value="consent"), False),
        (
            (),
            {"prompt": "consents"},
            Requirement("w", SOURCE, param="prompt", value="consent"),
            False,
        ),
    ],
)
def test_requirement_satisfied_by(
    scopes: tuple[str, ...], params: dict[str, str], requirement: Requirement, satisfied: bool
) -> None:
    assert requirement.satisfied_by(scopes, params) is satisfied


def test_minimal_mapping_gets_defaults() -> None:
    assert preset_from_mapping({"name": "acme"}) == Preset(
        name="acme", title="acme", authorize_url=None, token_url=None
    )


def test_requirements_are_built() -> None:
    preset = preset_from_mapping(
        {
            "name": "acme",
            "token_endpoint_auth_method": "none",
            "requires": [
                {"scope": "offline_access", "why": "w", "source": SOURCE},
                {
                    "param": "prompt",
                    "value": "consent",
                    "why": "w",
                    "source": SOURCE,
                    "strength": "likely",
                },
            ],
        }
    )
    assert preset.token_endpoint_auth_method == "none"
    assert preset.requires == (
        Requirement("w", SOURCE, scope="offline_access"),
        Requirement("w", SOURCE, strength="likely", param="prompt", value="consent"),
    )


def requirement(**fields: Any) -> dict[str, Any]:
    return {"name": "acme", "requires": [fields]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"name": "acme", "hostz": []}, "unknown preset fields: hostz", id="unknown"),
        pytest.param(
            {"name": "acme", "extra": 1, "another": 2},
            "unknown preset fields: another, extra",
            id="unknown-several",
        ),
        pytest.param({}, "needs a name", id="no-name"),
        pytest.param({"name": ""}, "needs a name", id="empty-name"),
        pytest.param({"name": 7}, "needs a name", id="name-not-string"),
        pytest.param(
            {"name": "acme", "token_endpoint_auth_method": "private_key_jwt"},
            "unknown token_endpoint_auth_method 'private_key_jwt'",
            id="auth-method-unsupported",
        ),
        pytest.param(
            {"name": "acme", "token_endpoint_auth_method": "basic"},
            "unknown token_endpoint_auth_method",
            id="auth-method-typo",
        ),
        pytest.param(
            requirement(scope="offline_access", why="w"), "needs `why` and a `source`", id="no-src"
        ),
        pytest.param(
            requirement(scope="offline_access", why="w", source=""),
            "needs `why` and a `source`",
            id="empty-source",
        ),
        pytest.param(
            requirement(scope="offline_access", source=SOURCE), "needs `why`", id="no-why"
        ),
        pytest.param(
            requirement(
                scope="offline_access", param="prompt", value="consent", why="w", source=SOURCE
            ),
            "either `scope` or `param` + `value`",
            id="scope-and-param",
        ),
        pytest.param(
            requirement(why="w", source=SOURCE), "either `scope` or `param`", id="neither"
        ),
        pytest.param(
            requirement(param="prompt", why="w", source=SOURCE),
            "either `scope` or `param`",
            id="param-without-value",
        ),
        pytest.param(
            requirement(scope="offline_access", why="w", source=SOURCE, strength="must"),
            "strength must be",
            id="bad-strength",
        ),
        pytest.param(
            {"name": "acme", "token_params": {"expiring": "1"}},
            "token parameter `expiring` needs an https source URL in [sources] as "
            '"token_params.expiring"',
            id="token-param-without-source",
        ),
        pytest.param(
            {
                "name": "acme",
                "token_params": {"expiring": "1"},
                "sources": {"token_params.expiring": "http://vendor.example/docs"},
            },
            "token parameter `expiring` needs an https source URL",
            id="token-param-source-not-https",
        ),
        pytest.param(
            {"name": "acme", "token_params": {"expiring": 1}},
            "`token_params` must be a table of strings",
            id="token-param-not-a-string",
        ),
        pytest.param(
            {
                "name": "acme",
                "token_params": {"refresh_token": "x", "code": "y"},
                "sources": {"token_params.refresh_token": SOURCE, "token_params.code": SOURCE},
            },
            "token_params may not set code, refresh_token: tokenlife sets them",
            id="token-param-reserved",
        ),
    ],
)
def test_preset_from_mapping_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        preset_from_mapping(data)


def test_token_params_are_built_with_their_sources() -> None:
    preset = preset_from_mapping(
        {
            "name": "acme",
            "token_params": {"expiring": "1"},
            "sources": {"token_params.expiring": SOURCE},
        }
    )
    assert preset.token_params == {"expiring": "1"}
    assert preset_from_mapping({"name": "acme"}).token_params == {}


def test_auth_methods_are_the_client_auth_table() -> None:
    for name in ("client_secret_basic", "client_secret_post", "none"):
        assert preset_from_mapping({"name": "a", "token_endpoint_auth_method": name})
    assert set(METHODS) == {"client_secret_basic", "client_secret_post", "none"}
