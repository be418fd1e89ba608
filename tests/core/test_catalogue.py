"""The provider catalogue: the providers it must know, every rule with its source."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tokenlife.catalogue import providers_table, replace_table
from tokenlife.core.authorization import build_authorization_request
from tokenlife.core.diagnosis import detect_vendor
from tokenlife.core.integration import Integration
from tokenlife.core.presets import RESERVED_TOKEN_PARAMS, Preset
from tokenlife.core.provider_facts import FACTS, UNCONFIRMED, facts_from_mapping
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

PRESETS = load_presets()
REQUIRED = {
    "google", "microsoft", "custom", "github", "github-app", "gitlab", "bitbucket", "slack",
    "salesforce", "atlassian", "okta", "auth0", "keycloak", "cognito", "dropbox", "box",
    "zoom", "hubspot", "xero", "quickbooks", "linkedin", "notion", "zendesk", "spotify",
}  # fmt: skip
VENDORS = sorted(set(PRESETS) - {"custom"})


def test_the_catalogue_covers_the_required_providers() -> None:
    assert set(PRESETS) >= REQUIRED, f"missing: {sorted(REQUIRED - set(PRESETS))}"


@pytest.mark.parametrize("name", VENDORS)
def test_every_fact_is_sourced_or_marked_unconfirmed(name: str) -> None:
    facts = PRESETS[name].facts
    for fact in FACTS:
        value = facts.get(fact)
        assert value, f"{name}: {fact} is empty"
        if value != UNCONFIRMED:
            assert facts.sources.get(fact, "").startswith("https://"), f"{name}: {fact}"
    assert all(q.source.startswith("https://") for q in facts.quirks)


@pytest.mark.parametrize("name", VENDORS)
def test_every_rule_names_its_source(name: str) -> None:
    preset = PRESETS[name]
    assert all(r.source.startswith("https://") for r in preset.requires)
    assert all(r.source.startswith("https://") for r in preset.reauthorization)
    assert preset.authorize_url and preset.token_url


@pytest.mark.parametrize("name", VENDORS)
def test_every_token_param_names_its_source(name: str) -> None:
    preset = PRESETS[name]
    for key in preset.token_params:
        assert preset.sources[f"token_params.{key}"].startswith("https://"), (name, key)
        assert key not in RESERVED_TOKEN_PARAMS


def test_shopify_asks_for_expiring_offline_tokens_in_the_code_exchange_only() -> None:
    # https://shopify.dev/docs/apps/build/authentication-authorization/migrate-to-expiring-offline-access-tokens
    config = IntegrationConfig(
        provider="shopify", client_id="c", client_secret="s",
        redirect_uri="https://app.example.com/cb", placeholders={"shop": "acme"},
    )  # fmt: skip
    integration = resolve("store", config, PRESETS["shopify"], "s", 30.0)
    assert dict(integration.token_params) == {"expiring": "1"}
    assert dict(integration.refresh_params) == {}  # Shopify's refresh needs no expiring=1
    assert "| `shopify` | on_request | `expiring=1` in the token request |" in providers_table(
        PRESETS
    )


def fill(template: str, preset: Preset) -> str:
    """Placeholders as a customer would fill them: the preset's default, else a domain
    under the vendor's suffix, else a name."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in preset.placeholders:
            return preset.placeholders[key]
        return f"acme.{preset.hosts[0]}" if key == "domain" and preset.hosts else "acme"

    return re.sub(r"\{([a-z_]+)\}", value, template)


@pytest.mark.parametrize("name", [n for n in VENDORS if PRESETS[n].hosts])
def test_a_custom_integration_at_a_vendors_endpoints_is_recognised(name: str) -> None:
    preset = PRESETS[name]
    assert preset.authorize_url and preset.token_url
    config = IntegrationConfig(
        provider="custom", client_id="c", client_secret="s",
        redirect_uri="https://app.example.com/cb",
        authorize_url=fill(preset.authorize_url, preset),
        token_url=fill(preset.token_url, preset),
    )  # fmt: skip
    integration = resolve("crm", config, PRESETS["custom"], "s", 30.0)
    found = detect_vendor(integration, PRESETS)
    assert found is not None and found[0].name == name


@pytest.mark.parametrize(
    "name", [n for n in VENDORS if PRESETS[n].requires or PRESETS[n].authorization_params]
)
def test_an_authorization_url_from_the_preset_carries_what_a_refresh_token_needs(
    name: str,
) -> None:
    preset = PRESETS[name]
    urls = f"{preset.authorize_url} {preset.token_url}"
    placeholders = {
        k: "acme.example.com" for k in re.findall(r"\{([a-z_]+)\}", urls)
        if k not in preset.placeholders
    }  # fmt: skip
    config = IntegrationConfig(
        provider=name, client_id="c", client_secret="s",
        redirect_uri="https://app.example.com/cb", placeholders=placeholders,
    )  # fmt: skip
    integration = resolve("crm", config, preset, "s", 30.0)
    request = build_authorization_request(integration, "user-1", "state", None, 0.0)
    sent = dict(request.pending.params)
    scopes = tuple(sent.get("scope", "").split())
    for requirement in preset.requires:
        if requirement.strength == "required":
            assert requirement.satisfied_by(scopes, sent), (name, requirement)
    for key, value in preset.authorization_params.items():
        assert sent[key] == value


def test_slack_scopes_are_joined_with_commas() -> None:
    config = IntegrationConfig(
        provider="slack", client_id="c", client_secret="s",
        redirect_uri="https://app.example.com/cb", scopes=("channels:read", "chat:write"),
    )  # fmt: skip
    integration = resolve("team", config, PRESETS["slack"], "s", 30.0)
    request = build_authorization_request(integration, "user-1", "state", None, 0.0)
    assert request.pending.params["scope"] == "channels:read,chat:write"
    assert request.pending.scopes == ("channels:read", "chat:write")


def test_docs_list_every_provider() -> None:
    text = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    assert all(f"| `{name}` |" in text for name in PRESETS)


def test_the_docs_table_is_the_catalogue() -> None:
    # Regenerate with `python -m tokenlife.providers --update-docs docs/providers.md`.
    text = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    assert replace_table(text, providers_table(PRESETS)) == text


def test_the_docs_table_needs_its_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_table("# The provider catalogue\n", "| table |")


def _custom_at(authorize_url: str, token_url: str) -> Integration:
    config = IntegrationConfig(
        provider="custom", client_id="c", client_secret="s",
        redirect_uri="https://app.example.com/cb",
        authorize_url=authorize_url, token_url=token_url,
    )  # fmt: skip
    return resolve("crm", config, PRESETS["custom"], "s", 30.0)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        # Microsoft's national clouds and the B2C / External ID tenant subdomains.
        ("https://login.microsoftonline.us/contoso/oauth2/v2.0", "microsoft"),
        ("https://login.partner.microsoftonline.cn/common/oauth2/v2.0", "microsoft"),
        ("https://contoso.b2clogin.com/contoso.onmicrosoft.com/b2c_1_in/oauth2/v2.0", "microsoft"),
        ("https://contoso.ciamlogin.com/contoso.onmicrosoft.com/oauth2/v2.0", "microsoft"),
        ("https://accounts.zoho.eu/oauth/v2", "zoho"),
        ("https://acme.myshopify.com/admin/oauth", "shopify"),
        ("https://api.x.com/2/oauth2", "x"),
        ("https://graph.instagram.com/oauth", "instagram"),
        # A host that only ends in a listed name's letters is not that vendor.
        ("https://notb2clogin.com/oauth2/v2.0", None),
        ("https://login.microsoftonline.us.example.net/oauth2/v2.0", None),
        ("https://box.com.example/oauth2", None),
    ],
)
def test_a_custom_integration_is_recognised_by_host(base: str, expected: str | None) -> None:
    found = detect_vendor(_custom_at(f"{base}/authorize", f"{base}/token"), PRESETS)
    assert (found and found[0].name) == expected, found


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("reddit", "duration=permanent"),
        ("x", "offline.access"),
        ("zoho", "access_type=offline&prompt=consent"),
    ],
)
def test_the_authorization_url_asks_for_a_refresh_token(name: str, sent: str) -> None:
    preset = PRESETS[name]
    config = IntegrationConfig(
        provider=name, client_id="c", client_secret="s", redirect_uri="https://app.example.com/cb"
    )
    request = build_authorization_request(
        resolve("crm", config, preset, "s", 30.0), "user-1", "state", None, 0.0
    )
    assert sent in request.url
    assert urlsplit(request.url).hostname in {"www.reddit.com", "x.com", "accounts.zoho.com"}


@pytest.mark.parametrize(
    ("name", "fact", "value"),
    [
        ("bitbucket", "rotates_refresh_tokens", "yes"),
        ("xero", "returns_expires_in", "yes"),
        ("spotify", "rotates_refresh_tokens", "sometimes"),
        ("facebook", "issues_refresh_tokens", "never"),
        ("instagram", "issues_refresh_tokens", "never"),
    ],
)
def test_fact_check_corrections(name: str, fact: str, value: str) -> None:
    assert PRESETS[name].facts.get(fact) == value
    assert PRESETS[name].facts.sources[fact].startswith("https://")


@pytest.mark.parametrize(("name", "idle_days"), [("bitbucket", 90), ("auth0", 30), ("google", 180)])
def test_idle_limits_drive_the_keep_alive(name: str, idle_days: float) -> None:
    assert PRESETS[name].refresh_token_idle_days == idle_days


def test_zendesk_names_the_expires_in_trap_of_old_clients() -> None:
    quirks = PRESETS["zendesk"].facts.quirks
    assert any("expires_in" in q.text and "before" in q.text for q in quirks)


@pytest.mark.parametrize(
    ("name", "grace"),
    # Atlassian: a 10-minute leeway; Okta: 0-60 s, 30 by default; Auth0: off by default.
    [("atlassian", 600), ("okta", 30), ("auth0", 0), ("google", None)],
)
def test_reuse_grace_facts(name: str, grace: int | None) -> None:
    facts = PRESETS[name].facts
    assert facts.refresh_token_reuse_grace_seconds == grace
    assert facts.as_dict()["refresh_token_reuse_grace_seconds"] == grace
    if grace is not None:
        source = facts.sources["refresh_token_reuse_grace_seconds"]
        assert source.startswith("https://"), name


def _facts_table(**extra: object) -> dict[str, object]:
    table: dict[str, object] = {fact: UNCONFIRMED for fact in FACTS}
    table.update(extra)
    return table


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"refresh_token_reuse_grace_seconds": 30}, "needs an https source"),
        ({"refresh_token_reuse_grace_seconds": -1}, "non-negative integer"),
        ({"refresh_token_reuse_grace_seconds": "30"}, "non-negative integer"),
        ({"refresh_token_reuse_grace_seconds": True}, "non-negative integer"),
    ],
)
def test_a_reuse_grace_fact_is_a_sourced_number(extra: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        facts_from_mapping("vendor", _facts_table(**extra))


def test_a_sourced_reuse_grace_fact_is_read() -> None:
    source = "https://vendor.example/docs/rotation"
    facts = facts_from_mapping(
        "vendor",
        _facts_table(
            refresh_token_reuse_grace_seconds=45,
            sources={"refresh_token_reuse_grace_seconds": source},
        ),
    )
    assert facts.refresh_token_reuse_grace_seconds == 45
