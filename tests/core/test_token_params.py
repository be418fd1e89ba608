"""Extra token request parameters: the catalogue's `token_params` on the code exchange
(Shopify's expiring=1), an integration's `extra_token_params` on the code exchange and
every refresh (Zendesk's expires_in), never in place of tokenlife's own parameters."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tokenlife.core.grants import authorization_code_request, refresh_token_request
from tokenlife.core.integration import Integration
from tokenlife.core.presets import RESERVED_TOKEN_PARAMS
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

REDIRECT = "https://app.example.com/oauth/callback"
SECRET = "client-secret-5e0a"
ZENDESK_OLD_CLIENT = {"expires_in": "1800", "refresh_token_expires_in": "2592000"}


def integration(provider: str, **config: Any) -> Integration:
    placeholder = {"shopify": "shop", "zendesk": "subdomain"}.get(provider)
    settings = IntegrationConfig(
        provider=provider,
        client_id="client-id",
        client_secret=SECRET,
        redirect_uri=REDIRECT,
        placeholders={placeholder: "acme"} if placeholder else {},
        **config,
    )
    return resolve("crm", settings, load_presets()[provider], SECRET, 30.0)


def test_shopify_token_params_go_with_the_code_exchange() -> None:
    request = authorization_code_request(integration("shopify"), "the-code", REDIRECT, None)
    assert request.url == "https://acme.myshopify.com/admin/oauth/access_token"
    assert request.form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "expiring": "1",
        "client_id": "client-id",
        "client_secret": SECRET,
    }


def test_shopify_refreshes_carry_no_token_params() -> None:
    request = refresh_token_request(integration("shopify"), "the-refresh-token")
    assert request.form == {
        "grant_type": "refresh_token",
        "refresh_token": "the-refresh-token",
        "client_id": "client-id",
        "client_secret": SECRET,
    }


def test_the_integrations_token_params_win_over_the_presets() -> None:
    shop = integration("shopify", extra_token_params={"expiring": "0"})
    exchange = authorization_code_request(shop, "the-code", REDIRECT, None)
    assert exchange.form["expiring"] == "0"
    assert refresh_token_request(shop, "rt").form["expiring"] == "0"


def test_zendesk_extra_token_params_go_with_the_exchange_and_every_refresh() -> None:
    zendesk = integration("zendesk", extra_token_params=ZENDESK_OLD_CLIENT)
    exchange = authorization_code_request(zendesk, "the-code", REDIRECT, "the-verifier")
    assert exchange.form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": "the-verifier",
        **ZENDESK_OLD_CLIENT,
        "client_id": "client-id",
        "client_secret": SECRET,
    }
    refresh = refresh_token_request(zendesk, "the-refresh-token")
    assert refresh.form == {
        "grant_type": "refresh_token",
        "refresh_token": "the-refresh-token",
        **ZENDESK_OLD_CLIENT,
        "client_id": "client-id",
        "client_secret": SECRET,
    }


def test_without_token_params_the_forms_are_unchanged() -> None:
    zendesk = integration("zendesk")
    assert set(authorization_code_request(zendesk, "c", REDIRECT, "v").form) == {
        "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret",
    }  # fmt: skip
    assert set(refresh_token_request(zendesk, "rt").form) == {
        "grant_type", "refresh_token", "client_id", "client_secret",
    }  # fmt: skip


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("name", [*sorted(RESERVED_TOKEN_PARAMS), "Client_ID ", "SCOPE"])
def test_token_params_never_replace_what_tokenlife_sets(name: str, method: str) -> None:
    """Loading refuses these names; an Integration built otherwise still can't send them."""
    forged = dataclasses.replace(
        integration("zendesk"),
        token_endpoint_auth_method=method,
        token_params={name: "forged", "expires_in": "1800"},
        refresh_params={name: "forged", "expires_in": "1800"},
    )
    exchange = authorization_code_request(forged, "the-code", REDIRECT, "the-verifier")
    refresh = refresh_token_request(forged, "the-refresh-token")
    for request in (exchange, refresh):
        assert "forged" not in request.form.values()
        assert request.form["expires_in"] == "1800"
