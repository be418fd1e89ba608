"""The missing-refresh-token diagnosis across vendors and mistakes: for each case the first
fix named is the one that solves it, and every cause names its evidence."""

from __future__ import annotations

from typing import Any

import pytest

from tokenlife.core.authorization import build_authorization_request
from tokenlife.core.diagnosis import diagnose_missing_refresh_token
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

PRESETS = load_presets()
CALLBACK = "https://app.example.com/cb"


def sent_for(
    provider: str, drop_scopes: tuple[str, ...] = (), **config: Any
) -> tuple[Any, dict[str, str]]:
    """The integration and the exact parameters its authorization URL carried."""
    parsed = IntegrationConfig(provider=provider, client_id="c", client_secret="s",
                               redirect_uri=CALLBACK, **config)  # fmt: skip
    integration = resolve("crm", parsed, PRESETS[provider], "s", 30.0)
    params = dict(build_authorization_request(integration, "u", "st", None, 0.0).pending.params)
    if drop_scopes:  # as sent by an older configuration, before the preset added them
        params["scope"] = " ".join(s for s in params["scope"].split() if s not in drop_scopes)
    return integration, params


def custom_at(url_authorize: str, url_token: str, **config: Any) -> dict[str, Any]:
    return {"authorize_url": url_authorize, "token_url": url_token, **config}


CASES = [
    pytest.param("custom", custom_at("https://accounts.google.com/o/oauth2/v2/auth",
                                     "https://oauth2.googleapis.com/token"), (), None,
                 'Use provider "google"', id="google-behind-custom"),
    pytest.param("custom", custom_at("https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                                     "https://login.microsoftonline.com/common/oauth2/v2.0/token"),
                 (), None, 'Use provider "microsoft"', id="microsoft-behind-custom"),
    pytest.param("custom", custom_at("https://login.xero.com/identity/connect/authorize",
                                     "https://identity.xero.com/connect/token"), (), None,
                 'Use provider "xero"', id="xero-behind-custom"),
    pytest.param("custom", custom_at("https://acme.okta.com/oauth2/v1/authorize",
                                     "https://acme.okta.com/oauth2/v1/token"), (), None,
                 'Use provider "okta"', id="okta-behind-custom"),
    pytest.param("custom", custom_at("https://www.dropbox.com/oauth2/authorize",
                                     "https://api.dropboxapi.com/oauth2/token"), (), None,
                 'Use provider "dropbox"', id="dropbox-behind-custom"),
    pytest.param("google", {"extra_authorization_params": {"prompt": "select_account"}}, (), None,
                 "Send prompt=consent", id="google-select-account"),
    pytest.param("google", {"extra_authorization_params": {"access_type": "online"}}, (), None,
                 "Send access_type=offline", id="google-online"),
    pytest.param("microsoft", {}, ("offline_access",), None, "Add offline_access",
                 id="microsoft-without-offline-access"),
    pytest.param("xero", {}, ("offline_access",), None, "Add offline_access",
                 id="xero-without-offline-access"),
    pytest.param("atlassian", {}, ("offline_access",), None, "Add offline_access",
                 id="atlassian-without-offline-access"),
    pytest.param("keycloak", {"placeholders": {"domain": "sso.acme.com", "realm": "acme"}},
                 ("offline_access",), None, "Add offline_access", id="keycloak-without-offline"),
    pytest.param("dropbox", {"extra_authorization_params": {"token_access_type": "online"}}, (),
                 None, "Send token_access_type=offline", id="dropbox-online"),
    pytest.param("salesforce", {}, ("refresh_token",), None, "Add refresh_token",
                 id="salesforce-without-refresh-token-scope"),
    pytest.param("custom", custom_at("https://idp.acme.com/authorize", "https://idp.acme.com/token",
                                     scopes=("openid",)), (), None, "Add offline_access",
                 id="oidc-without-offline-access"),
    pytest.param("custom", custom_at("https://idp.acme.com/authorize", "https://idp.acme.com/token",
                                     scopes=("openid", "offline_access"),
                                     extra_authorization_params={"prompt": "consent"}),
                 (), ("openid",), "Ask the user to reconnect and accept offline access",
                 id="oidc-offline-access-not-granted"),
    pytest.param("custom", custom_at("https://idp.acme.com/authorize", "https://idp.acme.com/token",
                                     scopes=("openid", "offline_access")), (), None,
                 "Send prompt=consent", id="oidc-offline-access-without-consent"),
    pytest.param("microsoft", {}, (), ("User.Read",), "Check that the client registration",
                 id="microsoft-all-sent-still-none"),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "config", "drop", "granted", "first_fix"), CASES)
def test_the_first_fix_is_the_right_one(
    provider: str,
    config: dict[str, Any],
    drop: tuple[str, ...],
    granted: tuple[str, ...] | None,
    first_fix: str,
) -> None:
    integration, sent = sent_for(provider, drop, **config)
    causes = diagnose_missing_refresh_token(integration, PRESETS, sent, granted, 3600)
    assert causes[0].fix.startswith(first_fix), [c.fix for c in causes]
    assert all(c.cause and c.fix and c.evidence for c in causes)


OIDC = custom_at("https://idp.acme.com/authorize", "https://idp.acme.com/token")
OFFLINE = {"scopes": ("openid", "offline_access")}

ORDER = [
    pytest.param("custom", OIDC | OFFLINE | {"extra_authorization_params": {"prompt": "login"}},
                 ("openid",), ["Send prompt=consent", "Ask the user to reconnect"],
                 id="offline-access-prompt-login-dropped"),
    pytest.param("custom", OIDC | OFFLINE, ("openid",),
                 ["Send prompt=consent", "Ask the user to reconnect"],
                 id="offline-access-custom-default-select-account-dropped"),
    pytest.param("custom", OIDC | OFFLINE | {"extra_authorization_params": {"prompt": "login"}},
                 None, ["Send prompt=consent"], id="offline-access-prompt-login-no-granted-scope"),
    pytest.param("custom", OIDC | OFFLINE | {"extra_authorization_params": {"prompt": "consent"}},
                 ("openid",), ["Ask the user to reconnect"], id="consent-sent-still-dropped"),
    pytest.param("custom", OIDC | {"scopes": ("openid",)}, ("openid",),
                 ["Add offline_access", "Send prompt=consent"],
                 id="without-offline-access-the-scope-comes-first"),
    pytest.param("custom", custom_at("https://accounts.google.com/o/oauth2/v2/auth",
                                     "https://oauth2.googleapis.com/token"), None,
                 ['Use provider "google"', "Send access_type=offline", "Send prompt=consent"],
                 id="wrong-provider-first-then-the-vendor-order"),
    pytest.param("google", {"extra_authorization_params": {"access_type": "online",
                                                           "prompt": "login"}}, None,
                 ["Send access_type=offline", "Send prompt=consent"], id="google-both-unmet"),
    pytest.param("custom", OIDC | OFFLINE | {"extra_authorization_params": {"prompt": "consent"}},
                 ("openid", "offline_access"), ["Check that the client registration"],
                 id="all-sent-all-granted"),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "config", "granted", "fixes"), ORDER)
def test_the_fixes_come_in_order_of_likelihood(
    provider: str, config: dict[str, Any], granted: tuple[str, ...] | None, fixes: list[str]
) -> None:
    integration, sent = sent_for(provider, **config)
    causes = diagnose_missing_refresh_token(integration, PRESETS, sent, granted, 3600)
    assert len(causes) == len(fixes), [c.fix for c in causes]
    for cause, fix in zip(causes, fixes, strict=True):
        assert cause.fix.startswith(fix), [c.fix for c in causes]


def test_a_dropped_offline_scope_is_evidence_for_the_prompt() -> None:
    config = OIDC | OFFLINE | {"extra_authorization_params": {"prompt": "login"}}
    integration, sent = sent_for("custom", **config)
    first = diagnose_missing_refresh_token(integration, PRESETS, sent, ("openid",), 3600)[0]
    assert first.cause.startswith("The authorization request carried prompt=login.")
    assert first.evidence == (
        "parameters sent: scope=openid offline_access, prompt=login; "
        "granted scope lacks offline_access"
    )
