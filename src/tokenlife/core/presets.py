"""Provider presets: what a vendor needs before it issues a refresh token, as data.

The presets themselves live in `tokenlife/providers/*.toml`; this module only gives
them a type and validates them, so adding a provider never touches code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlife.core.client_auth import METHODS
from tokenlife.core.provider_facts import ProviderFacts, facts_from_mapping

Strength = Literal["required", "likely"]

# Token request parameters tokenlife sets itself (RFC 6749 §4.1.3 and §6, RFC 7636 §4.5,
# client authentication per RFC 6749 §2.3.1 and RFC 7523 §2.2): extra token parameters,
# the catalogue's or an integration's, may not replace them. And scope: a refresh leaves it
# out so the grant keeps its scope (§6); the integration's scopes are the place for it.
RESERVED_TOKEN_PARAMS = frozenset(
    {
        "scope",
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
    }
)


def reserved_token_params(names: Iterable[str]) -> list[str]:
    """The names among `names` that tokenlife sets itself, compared as a server that reads
    names case-insensitively or trims them would (`Client_ID `)."""
    return sorted(n for n in names if n.strip().lower() in RESERVED_TOKEN_PARAMS)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One condition for a refresh token: a scope to request, or a parameter to send."""

    why: str
    source: str
    strength: Strength = "required"
    scope: str | None = None
    param: str | None = None
    value: str | None = None

    def satisfied_by(self, scopes: tuple[str, ...], params: Mapping[str, str]) -> bool:
        if self.scope is not None:
            return self.scope in scopes
        assert self.param is not None and self.value is not None
        # `prompt` is a space-delimited list (OIDC Core §3.1.2.1): "consent select_account" counts.
        return self.value in params.get(self.param, "").split()


@dataclass(frozen=True, slots=True)
class ReauthorizationRule:
    """A likely cause of a refresh that failed for good, matched on the OAuth error."""

    error: str
    cause: str
    fix: str
    source: str
    description_contains: str | None = None

    def matches(self, error: str, description: str | None) -> bool:
        if error != self.error:
            return False
        if self.description_contains is None:
            return True
        return self.description_contains.lower() in (description or "").lower()


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    title: str
    authorize_url: str | None
    token_url: str | None
    hosts: tuple[str, ...] = ()
    scope_prefixes: tuple[str, ...] = ()
    authorization_params: Mapping[str, str] = field(default_factory=dict)
    # Added to the authorization_code token request (Shopify's expiring=1); each needs its
    # source in `sources` as "token_params.NAME".
    token_params: Mapping[str, str] = field(default_factory=dict)
    offline_scopes: tuple[str, ...] = ()
    token_endpoint_auth_method: str = "client_secret_basic"
    pkce: bool = True
    echoes_offline_scope: bool = True
    placeholders: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    refresh_margin_seconds: float | None = None
    refresh_margin_fraction: float | None = None
    refresh_token_idle_days: float | None = None
    reauthorization: tuple[ReauthorizationRule, ...] = ()
    revocation_url: str | None = None
    facts: ProviderFacts = field(default_factory=ProviderFacts)

    def matches_host(self, host: str) -> bool:
        host = host.lower()
        return any(host == h or host.endswith("." + h) for h in self.hosts)

    def matches_scope(self, scope: str) -> bool:
        return any(scope.startswith(prefix) for prefix in self.scope_prefixes)


def preset_from_mapping(data: Mapping[str, Any]) -> Preset:
    """Build a Preset from a parsed TOML table; raise ValueError naming the bad field."""
    known = set(Preset.__dataclass_fields__) - {"revocation_url"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown preset fields: {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("preset needs a name")
    method = data.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in METHODS:
        raise ValueError(f"{name}: unknown token_endpoint_auth_method {method!r}")
    requires = data.get("requires", [])
    reauthorization = data.get("reauthorization", [])
    if not isinstance(requires, list) or not isinstance(reauthorization, list):
        raise ValueError(f"{name}: `requires` and `reauthorization` must be lists of tables")
    facts = facts_from_mapping(name, data.get("facts"))
    pkce = _flag(name, data, "pkce") if "pkce" in data else facts.get("pkce") != "unsupported"
    revocation = facts.get("revocation_url")
    sources = _table(name, data, "sources")
    return Preset(
        facts=facts,
        revocation_url=revocation if revocation.startswith("https://") else None,
        name=name,
        title=_string(name, data, "title", default=name),
        authorize_url=_string(name, data, "authorize_url", default=None),
        token_url=_string(name, data, "token_url", default=None),
        hosts=_strings(name, data, "hosts"),
        scope_prefixes=_strings(name, data, "scope_prefixes"),
        authorization_params=_table(name, data, "authorization_params"),
        token_params=_token_params(name, data, sources),
        offline_scopes=_strings(name, data, "offline_scopes"),
        token_endpoint_auth_method=method,
        pkce=pkce,
        echoes_offline_scope=_flag(name, data, "echoes_offline_scope"),
        placeholders=_table(name, data, "placeholders"),
        requires=tuple(_requirement(name, r) for r in requires),
        sources=sources,
        refresh_margin_seconds=_number(name, data, "refresh_margin_seconds"),
        refresh_margin_fraction=_number(name, data, "refresh_margin_fraction"),
        refresh_token_idle_days=_number(name, data, "refresh_token_idle_days"),
        reauthorization=tuple(_reauthorization(name, r) for r in reauthorization),
    )


def _token_params(
    preset: str, data: Mapping[str, Any], sources: Mapping[str, str]
) -> dict[str, str]:
    params = _table(preset, data, "token_params")
    reserved = reserved_token_params(params)
    if reserved:
        raise ValueError(
            f"{preset}: token_params may not set {', '.join(reserved)}: tokenlife sets them"
        )
    for key in params:
        if not sources.get(f"token_params.{key}", "").startswith("https://"):
            raise ValueError(
                f"{preset}: token parameter `{key}` needs an https source URL in [sources] "
                f'as "token_params.{key}"'
            )
    return params


_REQUIREMENT_FIELDS = frozenset({"why", "source", "strength", "scope", "param", "value"})


def _requirement(preset: str, data: Any) -> Requirement:
    if not isinstance(data, Mapping):
        raise ValueError(f"{preset}: every entry of `requires` must be a table")
    unknown = set(data) - _REQUIREMENT_FIELDS
    if unknown:
        raise ValueError(f"{preset}: unknown requirement fields: {', '.join(sorted(unknown))}")
    why = _string(preset, data, "why", default="")
    source = _string(preset, data, "source", default="")
    if not why or not source.startswith("https://"):
        raise ValueError(f"{preset}: every requirement needs `why` and a `source` (https URL)")
    scope = _string(preset, data, "scope", default=None)
    param = _string(preset, data, "param", default=None)
    value = _string(preset, data, "value", default=None)
    if (scope is None) == (param is None) or (param is None) != (value is None):
        raise ValueError(f"{preset}: a requirement names either `scope` or `param` + `value`")
    strength = data.get("strength", "required")
    if strength not in ("required", "likely"):
        raise ValueError(f"{preset}: strength must be 'required' or 'likely'")
    return Requirement(
        why=why, source=source, strength=strength, scope=scope, param=param, value=value
    )


_RULE_FIELDS = frozenset({"error", "description_contains", "cause", "fix", "source"})


def _reauthorization(preset: str, data: Any) -> ReauthorizationRule:
    if not isinstance(data, Mapping) or set(data) - _RULE_FIELDS:
        raise ValueError(f"{preset}: a reauthorization rule is a table of {sorted(_RULE_FIELDS)}")
    rule = ReauthorizationRule(
        error=_string(preset, data, "error"),
        cause=_string(preset, data, "cause"),
        fix=_string(preset, data, "fix"),
        source=_string(preset, data, "source"),
        description_contains=_string(preset, data, "description_contains", default=None),
    )
    if not rule.source.startswith("https://"):
        raise ValueError(f"{preset}: reauthorization rule sources must be https URLs")
    return rule


def _number(preset: str, data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{preset}: `{key}` must be a positive number")
    return float(value)


_MISSING: Any = object()


def _string(preset: str, data: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    if key not in data:
        if default is _MISSING:
            raise ValueError(f"{preset}: `{key}` is required")
        return default
    if not isinstance(data[key], str):
        raise ValueError(f"{preset}: `{key}` must be a string")
    return data[key]


def _strings(preset: str, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{preset}: `{key}` must be a list of strings")
    return tuple(value)


def _table(preset: str, data: Mapping[str, Any], key: str) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{preset}: `{key}` must be a table of strings")
    return dict(value)


def _flag(preset: str, data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, True)
    if not isinstance(value, bool):
        raise ValueError(f"{preset}: `{key}` must be true or false")
    return value
