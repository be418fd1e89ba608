"""The integrations file: validation at load, then `resolve` applying the preset."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tokenlife.core.authorization import build_authorization_request
from tokenlife.errors import ConfigurationError
from tokenlife.integrations import IntegrationConfig, load_integrations_file, resolve
from tokenlife.providers import load_presets

SECRET = "file-secret-41c7"
ENV_SECRET = "env-secret-88ad"
REDIRECT = 'redirect_uri = "https://app.example.com/oauth/callback"'

VALID = f"""
[integrations.google-drive]
provider = "google"
client_id = "1234.apps.googleusercontent.com"
client_secret = "{SECRET}"
scopes = ["openid", "https://www.googleapis.com/auth/drive.readonly"]
{REDIRECT}

[integrations.outlook]
provider = "microsoft"
tenant = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret_env = "MS_CLIENT_SECRET"
scopes = ["openid", "https://graph.microsoft.com/Mail.Read"]
{REDIRECT}

[integrations.acme]
provider = "custom"
issuer = "https://login.acme.example"
client_id = "tokenlife"
client_secret_env = "ACME_SECRET"
scopes = ["openid", "profile"]
extra_scopes = ["offline_access"]
extra_authorization_params = {{ prompt = "consent" }}
token_endpoint_auth_method = "client_secret_basic"
minimum_access_token_only_lifetime_days = 7
{REDIRECT}

[integrations."public.cli_2"]
provider = "custom"
authorize_url = "http://127.0.0.1:8080/authorize"
token_url = "http://127.0.0.1:8080/token"
client_id = "cli"
token_endpoint_auth_method = "none"
pkce = true
{REDIRECT}
"""

ENVIRON = {"MS_CLIENT_SECRET": ENV_SECRET, "ACME_SECRET": ENV_SECRET, "UNRELATED": "x"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "integrations.toml"
    path.write_text(text, "utf-8")
    return path


def test_valid_file(tmp_path: Path) -> None:
    loaded = load_integrations_file(write(tmp_path, VALID), load_presets(), ENVIRON)
    assert list(loaded) == ["google-drive", "outlook", "acme", "public.cli_2"]
    secrets = {name: secret for name, (_, secret) in loaded.items()}
    assert secrets == {
        "google-drive": SECRET,
        "outlook": ENV_SECRET,
        "acme": ENV_SECRET,
        "public.cli_2": None,
    }
    outlook, _ = loaded["outlook"]
    assert outlook.tenant == "contoso.onmicrosoft.com"
    assert outlook.scopes == ("openid", "https://graph.microsoft.com/Mail.Read")
    acme, _ = loaded["acme"]
    assert acme.issuer == "https://login.acme.example"
    assert acme.extra_authorization_params == {"prompt": "consent"}
    assert acme.minimum_access_token_only_lifetime_days == 7
    assert SECRET not in repr(loaded["google-drive"][0])


def table(*lines: str, name: str = "crm") -> str:
    return "\n".join([f"[integrations.{name}]", *lines, ""])


GOOGLE = ('provider = "google"', 'client_id = "id"')
CUSTOM_URLS = (
    'authorize_url = "https://idp.example.com/a"',
    'token_url = "https://idp.example.com/t"',
)


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        pytest.param(
            table(
                'provider = "custom"',
                'client_id = "id"',
                f'client_secret = "{SECRET}"',
                'authorize_url = "https://idp.example.com/a"',
                REDIRECT,
            ),
            {},
            "[integrations.crm]: table: a custom provider needs token_url, or an issuer",
            id="custom-without-token-url",
        ),
        pytest.param(
            table(
                'provider = "custom"', 'client_id = "id"', f'client_secret = "{SECRET}"', REDIRECT
            ),
            {},
            "a custom provider needs authorize_url and token_url, or an issuer",
            id="custom-without-urls",
        ),
        pytest.param(
            table(
                'provider = "nosuchvendor"',
                'client_id = "id"',
                f'client_secret = "{SECRET}"',
                REDIRECT,
            ),
            {},
            # The list of known providers follows; it grows with the catalogue.
            "unknown provider 'nosuchvendor' (",
            id="unknown-provider",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', 'client_secret_env = "CRM"', REDIRECT),
            {"CRM": ENV_SECRET},
            "set client_secret or client_secret_env, not both",
            id="both-secrets",
        ),
        pytest.param(
            table(*GOOGLE, 'client_secret_env = "CRM_SECRET"', REDIRECT),
            {"OTHER": ENV_SECRET},
            "client_secret_env names CRM_SECRET, which is unset",
            id="secret-env-unset",
        ),
        pytest.param(
            table(*GOOGLE, 'client_secret_env = "CRM_SECRET"', REDIRECT),
            {"CRM_SECRET": ""},
            "client_secret_env names CRM_SECRET, which is unset",
            id="secret-env-empty",
        ),
        pytest.param(
            table(*GOOGLE, REDIRECT),
            {},
            'set client_secret or client_secret_env (or token_endpoint_auth_method = "none"',
            id="no-secret",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', 'redirect_uri = "/oauth/callback"'),
            {},
            "redirect_uri must be an absolute http(s) URL",
            id="relative-redirect-uri",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', 'redirect_uri = "ftp://example.com/cb"'),
            {},
            "redirect_uri must be an absolute http(s) URL",
            id="ftp-redirect-uri",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', 'redirect_uri = "localhost:8080/cb"'),
            {},
            "redirect_uri must be an absolute http(s) URL",
            id="schemeless-redirect-uri",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', 'token_url = "https://"', REDIRECT),
            {},
            "token_url must be an absolute http(s) URL",
            id="token-url-without-host",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, 'tenant = "contoso"'),
            {},
            "tenant not used by provider",
            id="tenant-on-google",
        ),
        pytest.param(
            table(
                'provider = "custom"',
                'client_id = "id"',
                f'client_secret = "{SECRET}"',
                *CUSTOM_URLS,
                REDIRECT,
                'tenant = "contoso"',
            ),
            {},
            "tenant not used by provider",
            id="tenant-on-custom",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, name='"crm:eu"'),
            {},
            "invalid integration name 'crm:eu'",
            id="name-with-colon",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, name='"-crm"'),
            {},
            "invalid integration name '-crm'",
            id="name-starting-with-dash",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, name='"my crm"'),
            {},
            "invalid integration name 'my crm'",
            id="name-with-space",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, name="a" * 65),
            {},
            "invalid integration name",
            id="name-too-long",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, 'scope = ["openid"]'),
            {},
            "scope: Extra inputs are not permitted",
            id="unknown-key",
        ),
        pytest.param(
            table(f'client_secret = "{SECRET}"', REDIRECT),
            {},
            "provider: Field required; client_id: Field required",
            id="missing-fields",
        ),
        pytest.param(
            table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, 'pkce = "maybe"'),
            {},
            "pkce:",
            id="pkce-not-bool",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'token_endpoint_auth_method = "private_key_jwt"',
            ),
            {},
            "token_endpoint_auth_method:",
            id="unsupported-auth-method",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                "minimum_access_token_only_lifetime_days = 0",
            ),
            {},
            "minimum_access_token_only_lifetime_days: Input should be greater than 0",
            id="threshold-zero",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                "minimum_access_token_only_lifetime_days = 3651",
            ),
            {},
            "minimum_access_token_only_lifetime_days: Input should be less than or equal to 3650",
            id="threshold-too-large",
        ),
        pytest.param(
            f'[integrations.crm]\nprovider = "google"\nclient_secret = "{SECRET}\n',
            {},
            "integrations file ",
            id="invalid-toml",
        ),
        pytest.param(
            f'[integration.crm]\nprovider = "google"\nclient_secret = "{SECRET}"\n',
            {},
            "no [integrations.NAME] tables",
            id="no-integrations-table",
        ),
        pytest.param('integrations = "crm"\n', {}, "no [integrations.NAME] tables", id="not-table"),
        pytest.param("", {}, "no [integrations.NAME] tables", id="empty-file"),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'extra_authorization_params = { redirect_uri = "https://evil.example" }',
            ),
            {},
            "extra_authorization_params may not set redirect_uri",
            id="reserved-param",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'extra_token_params = { code_verifier = "x", expires_in = "1800" }',
            ),
            {},
            "extra_token_params may not set code_verifier: tokenlife sets them (the grant, "
            "the code or refresh token, redirect_uri, PKCE and client authentication)",
            id="reserved-token-param",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'extra_token_params = { client_secret = "other", grant_type = "password" }',
            ),
            {},
            "extra_token_params may not set client_secret, grant_type: tokenlife sets them",
            id="reserved-token-params",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'extra_token_params = { "Client_ID " = "other", scope = "admin" }',
            ),
            {},
            "extra_token_params may not set Client_ID , scope: tokenlife sets them",
            id="reserved-token-params-in-other-spellings",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                "extra_token_params = { expires_in = 1800 }",
            ),
            {},
            "extra_token_params.expires_in: Input should be a valid string",
            id="token-param-not-a-string",
        ),
        pytest.param(
            table(
                'provider = "microsoft"',
                'client_id = "c"',
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'tenant = "evil.example/x?y="',
            ),
            {},
            "tenant must be a tenant id, a domain or a name",
            id="tenant-with-path",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'issuer = "https://accounts.google.com"',
            ),
            {},
            "issuer applies to provider 'custom' only",
            id="issuer-on-google",
        ),
        pytest.param(
            table(
                *GOOGLE,
                f'client_secret = "{SECRET}"',
                REDIRECT,
                'introspection_url = "http://as.example/introspect"',
            ),
            {},
            "introspection_url must be an https URL (RFC 7662 §4 requires TLS",
            id="introspection-over-http",
        ),
    ],
)
def test_invalid_file(tmp_path: Path, text: str, environ: dict[str, str], expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_integrations_file(path, load_presets(), environ)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(f"integrations file {path}")
    assert SECRET not in message
    assert ENV_SECRET not in message


@pytest.mark.parametrize(
    "content",
    [pytest.param(None, id="missing-file"), pytest.param(b"\xff\xfe[x]", id="not-utf8")],
)
def test_unreadable_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "integrations.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigurationError, match="integrations file"):
        load_integrations_file(path, load_presets(), {})


@pytest.mark.parametrize(
    ("threshold_line", "default_days", "expected_days"),
    [
        pytest.param("minimum_access_token_only_lifetime_days = 7", 30.0, 7.0, id="override"),
        pytest.param("minimum_access_token_only_lifetime_days = 0.5", 30.0, 0.5, id="fractional"),
        pytest.param(
            "minimum_access_token_only_lifetime_days = 90", 30.0, 90.0, id="above-default"
        ),
        pytest.param("", 30.0, 30.0, id="default"),
        pytest.param("", 14.0, 14.0, id="other-default"),
    ],
)
def test_threshold_override_flows_into_resolve(
    tmp_path: Path, threshold_line: str, default_days: float, expected_days: float
) -> None:
    text = table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, threshold_line)
    loaded = load_integrations_file(write(tmp_path, text), load_presets(), {})
    config, secret = loaded["crm"]
    integration = resolve("crm", config, load_presets()["google"], secret, default_days)
    assert integration.minimum_access_token_only_lifetime_days == expected_days
    assert integration.client_secret == SECRET


@pytest.mark.parametrize(
    ("url_lines", "authorize_url", "token_url"),
    [
        pytest.param(
            (),
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            id="preset-urls",
        ),
        pytest.param(
            (
                'authorize_url = "http://127.0.0.1:8081/auth"',
                'token_url = "http://127.0.0.1:8081/t"',
            ),
            "http://127.0.0.1:8081/auth",
            "http://127.0.0.1:8081/t",
            id="both-overridden",
        ),
        pytest.param(
            ('token_url = "https://proxy.example.com/token"',),
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://proxy.example.com/token",
            id="token-url-overridden",
        ),
    ],
)
def test_google_url_overrides_keep_preset_params(
    tmp_path: Path, url_lines: tuple[str, ...], authorize_url: str, token_url: str
) -> None:
    text = table(
        *GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, 'scopes = ["openid"]', *url_lines
    )
    config, secret = load_integrations_file(write(tmp_path, text), load_presets(), {})["crm"]
    integration = resolve("crm", config, load_presets()["google"], secret, 30.0)
    assert integration.authorize_url == authorize_url
    assert integration.token_url == token_url
    assert integration.token_endpoint_auth_method == "client_secret_post"
    url = build_authorization_request(integration, "user-1", "state", None, 0.0).url
    assert url.startswith(authorize_url + "?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"


@pytest.mark.parametrize(
    ("provider", "line", "exchange", "refresh"),
    [
        pytest.param('provider = "shopify"', "", {"expiring": "1"}, {}, id="shopify-preset"),
        pytest.param(
            'provider = "shopify"',
            'extra_token_params = { expiring = "0" }',
            {"expiring": "0"},
            {"expiring": "0"},
            id="shopify-integration-wins",
        ),
        pytest.param(
            'provider = "zendesk"',
            'extra_token_params = { expires_in = "1800", refresh_token_expires_in = "2592000" }',
            {"expires_in": "1800", "refresh_token_expires_in": "2592000"},
            {"expires_in": "1800", "refresh_token_expires_in": "2592000"},
            id="zendesk-old-client",
        ),
        pytest.param('provider = "zendesk"', "", {}, {}, id="zendesk-default"),
    ],
)
def test_token_params_flow_into_resolve(
    tmp_path: Path, provider: str, line: str, exchange: dict[str, str], refresh: dict[str, str]
) -> None:
    placeholder = "shop" if "shopify" in provider else "subdomain"
    text = table(
        provider, 'client_id = "id"', f'client_secret = "{SECRET}"', REDIRECT, line,
        f'placeholders = {{ {placeholder} = "acme" }}',
    )  # fmt: skip
    config, secret = load_integrations_file(write(tmp_path, text), load_presets(), {})["crm"]
    integration = resolve("crm", config, load_presets()[config.provider], secret, 30.0)
    assert dict(integration.token_params) == exchange
    assert dict(integration.refresh_params) == refresh


def custom(**config: Any) -> IntegrationConfig:
    return IntegrationConfig(
        provider="custom",
        client_id="id",
        redirect_uri="https://app.example.com/cb",
        token_endpoint_auth_method="none",
        **config,
    )


DISCOVERED = ("https://idp.example.com/auth", "https://idp.example.com/token")


@pytest.mark.parametrize(
    ("config", "discovered", "endpoints"),
    [
        pytest.param(
            {"issuer": "https://idp.example.com"}, DISCOVERED, DISCOVERED, id="discovered"
        ),
        pytest.param(
            {"issuer": "https://idp.example.com", "token_url": "https://proxy.example.com/t"},
            DISCOVERED,
            ("https://idp.example.com/auth", "https://proxy.example.com/t"),
            id="explicit-wins-over-discovered",
        ),
        pytest.param(
            {"authorize_url": "https://a.example.com/a", "token_url": "https://a.example.com/t"},
            DISCOVERED,
            ("https://a.example.com/a", "https://a.example.com/t"),
            id="explicit-only",
        ),
    ],
)
def test_resolve_custom_endpoints(
    config: dict[str, str], discovered: tuple[str, str] | None, endpoints: tuple[str, str]
) -> None:
    integration = resolve("crm", custom(**config), load_presets()["custom"], None, 30.0, discovered)
    assert (integration.authorize_url, integration.token_url) == endpoints


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            {"authorize_url": "https://a.example.com/{tenant}/a", "token_url": "https://a/t"},
            "needs a value for {tenant}",
            id="unfilled-placeholder",
        ),
        pytest.param(
            {"issuer": "https://idp.example.com"},
            "no authorize_url/token_url",
            id="issuer-not-discovered-yet",
        ),
    ],
)
def test_resolve_rejects(config: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^integration crm: ") as caught:
        resolve("crm", custom(**config), load_presets()["custom"], None, 30.0)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("", False, id="default-off"),
        pytest.param("allow_account_change = true", True, id="on"),
        pytest.param("allow_account_change = false", False, id="off"),
    ],
)
def test_allow_account_change_flows_into_resolve(tmp_path: Path, line: str, expected: bool) -> None:
    text = table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, line)
    config, secret = load_integrations_file(write(tmp_path, text), load_presets(), {})["crm"]

    integration = resolve("crm", config, load_presets()["google"], secret, 30)

    assert integration.allow_account_change is expected
    assert (integration.issuer, integration.require_iss) == (None, False)


def test_allow_account_change_must_be_a_boolean(tmp_path: Path) -> None:
    text = table(*GOOGLE, f'client_secret = "{SECRET}"', REDIRECT, 'allow_account_change = "yes"')
    with pytest.raises(ConfigurationError, match="allow_account_change"):
        load_integrations_file(write(tmp_path, text), load_presets(), {})


@pytest.mark.parametrize("require_iss", [True, False])
def test_a_custom_issuer_and_its_iss_promise_flow_into_resolve(
    tmp_path: Path, require_iss: bool
) -> None:
    text = table('provider = "custom"', 'client_id = "id"', f'client_secret = "{SECRET}"',
                 REDIRECT, 'issuer = "https://idp.example.com"')  # fmt: skip
    config, secret = load_integrations_file(write(tmp_path, text), load_presets(), {})["crm"]
    discovered = ("https://idp.example.com/a", "https://idp.example.com/t")

    integration = resolve("crm", config, load_presets()["custom"], secret, 30, discovered,
                          require_iss=require_iss)  # fmt: skip

    assert integration.issuer == "https://idp.example.com"
    assert integration.require_iss is require_iss
