"""What the provider catalogue documents about each vendor, every fact with its source.

A fact the vendor's documentation doesn't confirm is written as "unconfirmed" rather
than guessed; only such facts may go without a source URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenlife.core.account import AccountEndpoint, account_endpoint_from_facts

UNCONFIRMED = "unconfirmed"

# fact -> the values it may take (None: free text, documented in docs/providers.md)
FACTS: dict[str, frozenset[str] | None] = {
    "revocation_url": None,  # a URL template, "none" or "unconfirmed"
    "scope_separator": frozenset({" ", ",", "+", UNCONFIRMED}),
    "pkce": frozenset({"required", "supported", "unsupported", UNCONFIRMED}),
    "issues_refresh_tokens": frozenset(
        {"always", "on_request", "app_setting", "never", UNCONFIRMED}
    ),
    # "sometimes": a refresh response may or may not carry a new refresh token (Spotify).
    "rotates_refresh_tokens": frozenset({"yes", "no", "optional", "sometimes", UNCONFIRMED}),
    "returns_expires_in": frozenset({"yes", "no", UNCONFIRMED}),
    "access_token_lifetime": None,
    "refresh_token_lifetime": None,
}

# Numeric facts (seconds), optional; those in _SOURCED_NUMBERS need their own source.
_NUMBERS = ("access_token_lifetime_seconds", "refresh_token_reuse_grace_seconds")
_SOURCED_NUMBERS = frozenset({"refresh_token_reuse_grace_seconds"})
# Optional: the vendor's "current user" API, where it has no ID token to say who the
# account is (core/account.py). `account_endpoint` needs its source.
_ACCOUNT = ("account_endpoint", "account_method", "account_id_field")
# Optional: the vendor's RFC 7662 introspection endpoint (a URL template, https), asked
# for the lifetime a token response doesn't state (core/introspection.py); needs its source.
_INTROSPECTION = "introspection_url"
# Optional free text, each with its own source: how to replace an expiring client secret
# (the alert.client_secret_expiring and alert.client_secret_expired messages quote it).
_OPTIONAL_TEXT = ("client_secret_rotation",)


@dataclass(frozen=True, slots=True)
class Quirk:
    text: str
    source: str


@dataclass(frozen=True, slots=True)
class ProviderFacts:
    values: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    quirks: tuple[Quirk, ...] = ()
    # A number where the documentation gives one; the preflight compares thresholds to it.
    access_token_lifetime_seconds: int | None = None
    # How long a rotated-out refresh token still works (the vendor's "leeway", "grace
    # period", "overlap"), by default; None where no such window is documented. A refresh
    # whose answer was lost can be sent again with the old token within this window.
    refresh_token_reuse_grace_seconds: int | None = None
    # Where a new access token tells whose it is (GitHub `GET /user` -> `id`), if documented.
    account: AccountEndpoint | None = None
    introspection_url: str | None = None

    def get(self, name: str) -> str:
        return self.values.get(name, UNCONFIRMED)

    def as_dict(self) -> dict[str, Any]:
        return {
            **{name: self.get(name) for name in FACTS},
            "access_token_lifetime_seconds": self.access_token_lifetime_seconds,
            "refresh_token_reuse_grace_seconds": self.refresh_token_reuse_grace_seconds,
            "account_endpoint": None if self.account is None else self.account.url,
            "account_method": None if self.account is None else self.account.method,
            "account_id_field": None if self.account is None else self.account.id_field,
            "introspection_url": self.introspection_url,
            "client_secret_rotation": self.values.get("client_secret_rotation"),
            "sources": dict(self.sources),
            "quirks": [{"text": q.text, "source": q.source} for q in self.quirks],
        }


def facts_from_mapping(preset: str, data: Any) -> ProviderFacts:
    """Validate a `[facts]` table: known facts, allowed values, a source for each."""
    if data is None:
        return ProviderFacts()
    if not isinstance(data, Mapping):
        raise ValueError(f"{preset}: `facts` must be a table")
    allowed = {*FACTS, "sources", "quirks", *_NUMBERS, *_ACCOUNT, _INTROSPECTION, *_OPTIONAL_TEXT}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{preset}: unknown facts: {', '.join(sorted(unknown))}")
    values: dict[str, str] = {}
    for name, choices in FACTS.items():
        value = data.get(name)
        if value is None:
            raise ValueError(f'{preset}: fact `{name}` is missing (write "{UNCONFIRMED}")')
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise ValueError(f"{preset}: fact `{name}` must be one of {sorted(choices or [])}")
        values[name] = value
    sources = data.get("sources", {})
    if not isinstance(sources, Mapping):
        raise ValueError(f"{preset}: `facts.sources` must be a table")
    for name, value in values.items():
        source = sources.get(name)
        if value != UNCONFIRMED and not (isinstance(source, str) and _is_https(source)):
            raise ValueError(f"{preset}: fact `{name}` needs an https source URL in facts.sources")
    for name in _OPTIONAL_TEXT:
        if name not in data:
            continue
        if not isinstance(data[name], str) or not _is_https(sources.get(name)):
            raise ValueError(f"{preset}: `{name}` is text and needs an https source URL")
        values[name] = data[name]
    numbers: dict[str, int | None] = {}
    for name in _NUMBERS:
        seconds = data.get(name)
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0
        ):
            raise ValueError(f"{preset}: `{name}` must be a non-negative integer")
        if seconds is not None and name in _SOURCED_NUMBERS and not _is_https(sources.get(name)):
            raise ValueError(f"{preset}: `{name}` needs an https source URL in facts.sources")
        numbers[name] = seconds
    account = account_endpoint_from_facts(preset, {k: data[k] for k in _ACCOUNT if k in data})
    if account is not None and not _is_https(sources.get("account_endpoint")):
        raise ValueError(f"{preset}: `account_endpoint` needs an https source URL in facts.sources")
    introspection = data.get(_INTROSPECTION)
    if introspection is not None and not (
        _is_https(introspection) and _is_https(sources.get(_INTROSPECTION))
    ):
        raise ValueError(
            f"{preset}: `{_INTROSPECTION}` must be an https URL with its source in facts.sources"
        )
    return ProviderFacts(
        introspection_url=introspection,
        values=values,
        sources={k: str(v) for k, v in sources.items()},
        quirks=tuple(_quirk(preset, q) for q in _list(preset, data.get("quirks", []))),
        access_token_lifetime_seconds=numbers["access_token_lifetime_seconds"],
        refresh_token_reuse_grace_seconds=numbers["refresh_token_reuse_grace_seconds"],
        account=account,
    )


def _quirk(preset: str, data: Any) -> Quirk:
    if not isinstance(data, Mapping) or set(data) != {"text", "source"}:
        raise ValueError(f"{preset}: every quirk is a table of `text` and `source`")
    if not isinstance(data["text"], str) or not _is_https(data["source"]):
        raise ValueError(f"{preset}: a quirk needs text and an https source URL")
    return Quirk(text=data["text"], source=data["source"])


def _list(preset: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{preset}: `facts.quirks` must be a list of tables")
    return value


def _is_https(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("https://") and len(value) > 12
