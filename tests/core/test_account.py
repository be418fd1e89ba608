"""Reading the account id out of a provider's "current user" answer, and the catalogue
facts that say where to ask: every input gives an id or a typed error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tokenlife.core.account import AccountEndpoint, account_endpoint_from_facts, parse_account_body
from tokenlife.core.integration import Integration
from tokenlife.core.provider_facts import facts_from_mapping
from tokenlife.errors import ConfigurationError, InvalidAccountResponseError
from tokenlife.integrations import resolve, validate_table
from tokenlife.providers import load_presets

GITHUB = AccountEndpoint(url="https://api.github.com/user", id_field="id")
NESTED = AccountEndpoint(url="https://api.example.com/me", id_field="user.id")


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        (GITHUB, {"id": 583231, "login": "octocat"}, "583231"),
        (GITHUB, {"id": "U12345"}, "U12345"),
        (GITHUB, {"id": 0}, "0"),
        (GITHUB, {"id": -7}, "-7"),
        (NESTED, {"user": {"id": "abc", "name": "x"}}, "abc"),
        (NESTED, {"user": {"id": 42}}, "42"),
        (AccountEndpoint("https://x.example/me", "account_id", "POST"),
         {"account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"},
         "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"),
    ],
)  # fmt: skip
def test_the_account_id_is_read_as_a_string(
    endpoint: AccountEndpoint, body: Any, expected: str
) -> None:
    assert parse_account_body(endpoint, json.dumps(body).encode()) == expected


@pytest.mark.parametrize(
    ("endpoint", "body", "says"),
    [
        (GITHUB, b"not json", "not JSON"),
        (GITHUB, b"", "not JSON"),
        (GITHUB, b"<html>Sign in</html>", "not JSON"),
        (GITHUB, b"[1, 2]", "no object"),
        (GITHUB, b'"id"', "no object"),
        (GITHUB, b"null", "no object"),
        (GITHUB, b'{"login": "octocat"}', "no `id`"),
        (GITHUB, b'{"id": null}', "not a string or an integer"),
        (GITHUB, b'{"id": true}', "not a string or an integer"),
        (GITHUB, b'{"id": 1.5}', "not a string or an integer"),
        (GITHUB, b'{"id": {"value": 1}}', "not a string or an integer"),
        (GITHUB, b'{"id": ["1"]}', "not a string or an integer"),
        (GITHUB, b'{"id": ""}', "1-255 printable"),
        (GITHUB, b'{"id": "line\\nbreak"}', "1-255 printable"),
        (GITHUB, b'{"id": "caf\\u00e9"}', "1-255 printable"),
        (GITHUB, json.dumps({"id": "x" * 256}).encode(), "1-255 printable"),
        (GITHUB, b'{"id": 1' + b"0" * 300 + b"}", "1-255 printable"),
        (GITHUB, b"[" * 100_000, "not JSON"),
        (NESTED, b'{"user": "abc"}', "no object"),
        (NESTED, b'{"id": "abc"}', "no `user.id`"),
        (NESTED, b'{"user": {"name": "abc"}}', "no `user.id`"),
    ],
)
def test_an_answer_without_a_usable_id_is_a_typed_error(
    endpoint: AccountEndpoint, body: bytes, says: str
) -> None:
    with pytest.raises(InvalidAccountResponseError, match=says) as caught:
        parse_account_body(endpoint, body)
    assert caught.value.error == "invalid_account_response"


def test_an_error_never_repeats_the_bodys_values() -> None:
    with pytest.raises(InvalidAccountResponseError) as caught:
        parse_account_body(GITHUB, b'{"id": {"secret": "s3cr3t-value"}}')
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, None),
        ({"account_endpoint": "https://api.github.com/user", "account_id_field": "id"},
         AccountEndpoint("https://api.github.com/user", "id", "GET")),
        ({"account_endpoint": "https://a.example/me", "account_id_field": "data.user.id",
          "account_method": "POST"},
         AccountEndpoint("https://a.example/me", "data.user.id", "POST")),
    ],
)  # fmt: skip
def test_account_facts_are_read(facts: dict[str, str], expected: AccountEndpoint | None) -> None:
    assert account_endpoint_from_facts("p", facts) == expected


@pytest.mark.parametrize(
    ("facts", "says"),
    [
        ({"account_endpoint": "https://a.example/me"}, "go together"),
        ({"account_id_field": "id"}, "go together"),
        ({"account_method": "GET"}, "go together"),
        ({"account_endpoint": "http://a.example/me", "account_id_field": "id"}, "https URL"),
        ({"account_endpoint": "https://", "account_id_field": "id"}, "https URL"),
        ({"account_endpoint": 5, "account_id_field": "id"}, "https URL"),
        ({"account_endpoint": "https://a.example/me", "account_id_field": ""}, "dotted path"),
        ({"account_endpoint": "https://a.example/me", "account_id_field": "a..b"}, "dotted path"),
        ({"account_endpoint": "https://a.example/me", "account_id_field": "$.id"}, "dotted path"),
        ({"account_endpoint": "https://a.example/me", "account_id_field": "users[0]"},
         "dotted path"),
        ({"account_endpoint": "https://a.example/me", "account_id_field": "id",
          "account_method": "DELETE"}, "account_method"),
        ({"account_endpoint": "https://a.example/me", "account_id_field": "id",
          "account_method": "get"}, "account_method"),
    ],
)  # fmt: skip
def test_bad_account_facts_are_refused(facts: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        account_endpoint_from_facts("p", facts)


def test_an_account_endpoint_needs_its_source() -> None:
    table: dict[str, object] = {
        name: "unconfirmed"
        for name in ("revocation_url", "scope_separator", "pkce", "issues_refresh_tokens",
                     "rotates_refresh_tokens", "returns_expires_in", "access_token_lifetime",
                     "refresh_token_lifetime")
    }  # fmt: skip
    table |= {"account_endpoint": "https://a.example/me", "account_id_field": "id"}
    with pytest.raises(ValueError, match="account_endpoint` needs an https source"):
        facts_from_mapping("p", table)
    table["sources"] = {"account_endpoint": "https://docs.a.example/me"}
    assert facts_from_mapping("p", table).account == AccountEndpoint("https://a.example/me", "id")


def test_the_catalogue_names_account_endpoints_with_their_sources() -> None:
    presets = load_presets()
    known = {name for name, p in presets.items() if p.facts.account is not None}
    assert known == {"github", "github-app", "box", "dropbox", "zoom"}
    for name in known:
        facts = presets[name].facts
        assert facts.sources["account_endpoint"].startswith("https://"), name
    dropbox = presets["dropbox"].facts.account
    assert dropbox is not None and (dropbox.method, dropbox.id_field) == ("POST", "account_id")


def _validate(provider: str, **extra: str) -> Integration:
    presets = load_presets()
    table = {"provider": provider, "client_id": "c", "client_secret": "s",
             "redirect_uri": "https://app.example.com/cb", **extra}  # fmt: skip
    config = validate_table("crm", table, presets, "here")
    return resolve("crm", config, presets[provider], "s", 30.0)


def test_an_integration_takes_the_catalogues_account_endpoint_or_its_own_url() -> None:
    assert _validate("github").account_endpoint == GITHUB
    assert _validate("google").account_endpoint is None
    moved = _validate("github", account_url="https://ghe.example.com/api/v3/user")
    assert moved.account_endpoint == AccountEndpoint("https://ghe.example.com/api/v3/user", "id")


def test_an_account_url_for_a_provider_without_an_account_endpoint_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="account_url applies only"):
        _validate("google", account_url="https://example.com/me")
    with pytest.raises(ConfigurationError, match="account_url must be an absolute"):
        _validate("github", account_url="/user")
