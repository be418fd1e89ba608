"""Catalogue batch B (TikTok, Pinterest, Airtable, Asana, Pipedrive, Intercom, Linear, Figma,
Calendly): what the new presets change in the requests tokenlife builds."""

from __future__ import annotations

import pytest

from tokenlife.core.authorization import build_authorization_request
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, Verdict, classify, status_for
from tokenlife.core.tokens import parse_token_response
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

PRESETS = load_presets()
BATCH = ("tiktok", "pinterest", "airtable", "asana", "pipedrive", "intercom", "linear",
         "figma", "calendly")  # fmt: skip
DAY = 86_400.0


def integration(provider: str, scopes: tuple[str, ...] = ()) -> Integration:
    config = IntegrationConfig(
        provider=provider, client_id="c", client_secret="s",
        redirect_uri="https://app.example.com/cb", scopes=scopes,
    )  # fmt: skip
    return resolve("crm", config, PRESETS[provider], "s", 30.0)


def test_the_batch_is_in_the_catalogue() -> None:
    assert set(BATCH) <= set(PRESETS)


@pytest.mark.parametrize(
    ("provider", "scopes", "sent"),
    [
        # TikTok and Linear document comma-separated scope lists; Airtable and Asana spaces.
        ("tiktok", ("user.info.basic", "video.list"), "user.info.basic,video.list"),
        ("linear", ("read", "write"), "read,write"),
        ("airtable", ("data.records:read", "schema.bases:read"),
         "data.records:read schema.bases:read"),
        ("asana", ("tasks:read", "projects:read"), "tasks:read projects:read"),
    ],
)  # fmt: skip
def test_scopes_are_joined_the_way_the_vendor_documents(
    provider: str, scopes: tuple[str, ...], sent: str
) -> None:
    request = build_authorization_request(integration(provider, scopes), "u", "st", "v" * 43, 0.0)
    assert request.pending.params["scope"] == sent


def test_airtable_sends_pkce_and_keeps_idle_refresh_tokens_alive() -> None:
    airtable = integration("airtable", ("data.records:read",))
    request = build_authorization_request(airtable, "u", "st", "v" * 43, 0.0)
    # Airtable's authorization request carries code_challenge with method S256.
    assert request.pending.params["code_challenge_method"] == "S256"
    assert airtable.token_endpoint_auth_method == "client_secret_basic"
    # Refresh tokens die after 60 days unused: a keep-alive refresh comes before that.
    assert airtable.refresh_timing.refresh_token_idle_seconds == 60 * DAY


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("asana", "https://app.asana.com/-/oauth_revoke"),
        ("calendly", "https://auth.calendly.com/oauth/revoke"),
        # Not RFC 7009: TikTok names the client client_key, Linear takes access_token.
        ("tiktok", None),
        ("linear", None),
    ],
)
def test_revocation_urls_only_where_the_endpoint_takes_a_token(
    provider: str, url: str | None
) -> None:
    assert integration(provider).revocation_url == url


def test_intercoms_documented_token_response_keeps_the_connection_active() -> None:
    # Intercom answers token_type, token and access_token: no refresh token and no
    # expires_in. Like GitHub's, such a connection stays active instead of degraded.
    assert PRESETS["intercom"].facts.get("issues_refresh_tokens") == "never"
    body = b'{"token_type": "Bearer", "token": "dG9rOjBi", "access_token": "dG9rOjBi"}'
    tokens = parse_token_response(200, "application/json", body, now=0.0)
    assert tokens.refresh_token is None and tokens.expires_at is None
    verdict = classify(tokens, integration("intercom").minimum_access_token_only_lifetime_days)
    assert verdict is Verdict.LIFETIME_UNKNOWN
    assert status_for(verdict) is Status.ACTIVE


def test_calendlys_documented_token_response_is_refreshable_for_two_hours() -> None:
    body = (b'{"token_type": "Bearer", "expires_in": 7200, "created_at": 1548689183,'
            b' "refresh_token": "b77a", "access_token": "eyJh", "scope": "default",'
            b' "owner": "https://api.calendly.com/users/EBHA",'
            b' "organization": "https://api.calendly.com/organizations/EBHA"}')  # fmt: skip
    tokens = parse_token_response(200, "application/json", body, now=1000.0)
    assert tokens.expires_at == 1000.0 + 7200
    assert tokens.lifetime_seconds == PRESETS["calendly"].facts.access_token_lifetime_seconds
    assert classify(tokens, 30.0) is Verdict.REFRESHABLE
