"""Catalogue entries whose data changes what tokenlife sends or schedules: Docusign's
`extended` scope and environments, Strava's comma-separated scopes, second vendor hosts,
and refresh-token idle limits (Docusign, Miro)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tokenlife.core.authorization import build_authorization_request
from tokenlife.core.diagnosis import detect_vendor
from tokenlife.core.integration import Integration
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

PRESETS = load_presets()
DAY = 86400.0


def integration(provider: str, **overrides: Any) -> Integration:
    config = IntegrationConfig(
        provider=provider,
        client_id="client",
        client_secret="secret",
        redirect_uri="https://app.example.com/oauth/callback",
        **overrides,
    )
    return resolve("app", config, PRESETS[provider], "secret", 30.0)


def sent_params(integ: Integration) -> dict[str, str]:
    return dict(build_authorization_request(integ, "user-1", "state", None, 0.0).pending.params)


@pytest.mark.parametrize(
    ("placeholders", "host"),
    [
        ({}, "account.docusign.com"),
        ({"account_server": "account-d.docusign.com"}, "account-d.docusign.com"),
    ],
    ids=["production", "developer"],
)
def test_docusign_asks_for_extended_at_the_chosen_environment(
    placeholders: dict[str, str], host: str
) -> None:
    integ = integration("docusign", scopes=("signature",), placeholders=placeholders)
    params = sent_params(integ)
    # Without `extended`, refresh tokens keep the first one's expiry and the connection dies.
    assert params["scope"].split() == ["signature", "extended"]
    urls = (integ.authorize_url, integ.token_url)
    assert {urlsplit(url).hostname for url in urls} == {host}


def test_strava_scopes_are_joined_with_commas() -> None:
    integ = integration("strava", scopes=("read", "activity:read_all"))
    assert sent_params(integ)["scope"] == "read,activity:read_all"


@pytest.mark.parametrize(
    ("name", "authorize_url", "token_url"),
    [
        ("docusign", "https://account-d.docusign.com/oauth/auth",
         "https://account-d.docusign.com/oauth/token"),
        ("square", "https://connect.squareupsandbox.com/oauth2/authorize",
         "https://connect.squareupsandbox.com/oauth2/token"),
        ("monday", "https://auth.monday.com/oauth2/authorize",
         "https://auth.monday.com/oauth2/token"),
    ],
    ids=["docusign-developer", "square-sandbox", "monday-legacy-token-url"],
)  # fmt: skip
def test_a_custom_integration_at_another_vendor_host_is_recognised(
    name: str, authorize_url: str, token_url: str
) -> None:
    integ = integration("custom", authorize_url=authorize_url, token_url=token_url)
    found = detect_vendor(integ, PRESETS)
    assert found is not None and found[0].name == name


@pytest.mark.parametrize(("name", "days"), [("docusign", 30), ("miro", 60)])
def test_the_refresh_token_idle_limit_reaches_the_schedule(name: str, days: int) -> None:
    integ = integration(name)
    assert integ.refresh_timing.refresh_token_idle_seconds == days * DAY
