"""Provider presets: what a vendor needs before it issues a refresh token, as data.

The presets themselves live in `tokenlife/providers/*.toml`; this module only gives
them a type and validates them, so adding a provider never touches code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlife.core.client_auth import METHODS

Strength = Literal["required", "likely"]


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
class Preset:
    name: str
    title: str
    authorize_url: str | None
    token_url: str | None
    hosts: tuple[str, ...] = ()
    scope_prefixes: tuple[str, ...] = ()
    authorization_params: Mapping[str, str] = field(default_factory=dict)
    offline_scopes: tuple[str, ...] = ()
    token_endpoint_auth_method: str = "client_secret_basic"
    pkce: bool = True
    echoes_offline_scope: bool = True
    placeholders: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def matches_host(self, host: str) -> bool:
        host = host.lower()
        return any(host == h or host.endswith("." + h) for h in self.hosts)

    def matches_scope(self, scope: str) -> bool:
        return any(scope.startswith(prefix) for prefix in self.scope_prefixes)


def preset_from_mapping(data: Mapping[str, Any]) -> Preset:
    """Build a Preset from a parsed TOML table; raise ValueError naming the bad field."""
    known = set(Preset.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown preset fields: {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("preset needs a name")
    method = data.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in METHODS:
        raise ValueError(f"{name}: unknown token_endpoint_auth_method {method!r}")
    requires = tuple(_requirement(name, r) for r in data.get("requires", ()))
    return Preset(
        name=name,
        title=str(data.get("title", name)),
        authorize_url=data.get("authorize_url"),
        token_url=data.get("token_url"),
        hosts=tuple(data.get("hosts", ())),
        scope_prefixes=tuple(data.get("scope_prefixes", ())),
        authorization_params=dict(data.get("authorization_params", {})),
        offline_scopes=tuple(data.get("offline_scopes", ())),
        token_endpoint_auth_method=method,
        pkce=bool(data.get("pkce", True)),
        echoes_offline_scope=bool(data.get("echoes_offline_scope", True)),
        placeholders=dict(data.get("placeholders", {})),
        requires=requires,
        sources=dict(data.get("sources", {})),
    )


def _requirement(preset: str, data: Mapping[str, Any]) -> Requirement:
    if not data.get("why") or not data.get("source"):
        raise ValueError(f"{preset}: every requirement needs `why` and a `source` URL")
    has_scope = "scope" in data
    has_param = "param" in data and "value" in data
    if has_scope == has_param:
        raise ValueError(f"{preset}: a requirement names either `scope` or `param` + `value`")
    strength = data.get("strength", "required")
    if strength not in ("required", "likely"):
        raise ValueError(f"{preset}: strength must be 'required' or 'likely'")
    return Requirement(
        why=str(data["why"]),
        source=str(data["source"]),
        strength=strength,
        scope=data.get("scope"),
        param=data.get("param"),
        value=data.get("value"),
    )
