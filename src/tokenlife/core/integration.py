"""A configured integration with its preset applied: everything a request needs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tokenlife.core.account import AccountEndpoint
from tokenlife.core.presets import Preset
from tokenlife.core.refresh_timing import RefreshTiming

# Integration names and connection ids become parts of Redis keys; `:` separates parts,
# so integration names may not contain it. Connection ids may (e.g. "tenant:user").
INTEGRATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CONNECTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,199}$")


@dataclass(frozen=True, slots=True)
class Integration:
    name: str
    preset: Preset
    client_id: str
    client_secret: str | None = field(repr=False)
    scopes: tuple[str, ...]
    redirect_uri: str
    authorize_url: str
    token_url: str
    authorization_params: Mapping[str, str]
    token_endpoint_auth_method: str
    pkce: bool
    minimum_access_token_only_lifetime_days: float
    refresh_timing: RefreshTiming = field(default_factory=RefreshTiming)
    # RFC 6749 §3.3 says spaces; a few vendors (Slack) want commas.
    scope_separator: str = " "
    revocation_url: str | None = None  # RFC 7009, when the vendor has one
    # The authorization server's issuer identifier, when known (a custom integration's
    # `issuer`): checked against RFC 9207 `iss` and the ID token's `iss` claim.
    issuer: str | None = None
    # The discovery document says `authorization_response_iss_parameter_supported`: a
    # callback without `iss` is then refused (RFC 9207 §2.4, mix-up defence).
    require_iss: bool = False
    # A reconnect may bring tokens of a different account (OIDC `sub`); off by default,
    # so a stranger's consent can't replace the account a connection is bound to.
    allow_account_change: bool = False
    # Where a new access token tells whose it is, for providers without an ID token (the
    # catalogue's `account_endpoint`, or the integration's `account_url`); None: not asked.
    account_endpoint: AccountEndpoint | None = None
    # The discovery document's `prompt_values_supported`, where the server publishes it:
    # names the prompt to send when a server refuses one (core/authorization_errors.py).
    prompt_values_supported: tuple[str, ...] | None = None
    # RFC 7662: asked for `exp` when a token response states no lifetime (no expires_in,
    # no JWT exp); the integrations file's, the catalogue's, or discovery's.
    introspection_url: str | None = None
    # When the client secret stops working (epoch seconds), where the operator wrote it in
    # the integrations file; None: never, or unknown. core/secret_expiry.py warns ahead.
    client_secret_expires_at: float | None = None
    # Extra parameters of the token requests: `token_params` go with the authorization_code
    # exchange (the catalogue's, overridden by the integration's `extra_token_params`),
    # `refresh_params` with every refresh (the integration's alone: no vendor in the
    # catalogue wants one on the refresh). tokenlife's own parameters always win.
    token_params: Mapping[str, str] = field(default_factory=dict)
    refresh_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.preset.name


def requested_scopes(
    preset: Preset, scopes: tuple[str, ...], extra: tuple[str, ...]
) -> tuple[str, ...]:
    """Configured scopes, then extras, then the preset's offline scopes; no duplicates."""
    merged: list[str] = []
    for scope in (*scopes, *extra, *preset.offline_scopes):
        if scope not in merged:
            merged.append(scope)
    return tuple(merged)


def authorization_params(preset: Preset, extra: Mapping[str, str]) -> dict[str, str]:
    """The preset's parameters, overridden by the integration's own."""
    return {**preset.authorization_params, **extra}


def token_params(preset: Preset, extra: Mapping[str, str]) -> dict[str, str]:
    """The preset's token request parameters, overridden by the integration's own."""
    return {**preset.token_params, **extra}


def fill_placeholders(url: str, values: Mapping[str, str]) -> str:
    """Replace `{tenant}`-style placeholders; an unfilled one is a configuration error."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"URL {url!r} needs a value for {{{key}}}")
        return values[key]

    return re.sub(r"\{([a-z_]+)\}", replace, url)


def split_scope(value: str) -> tuple[str, ...]:
    """A scope parameter as sent, whichever separator the vendor uses."""
    return tuple(value.replace(",", " ").split())


def check_name(name: str) -> str:
    if not INTEGRATION_NAME.fullmatch(name):
        raise ValueError(
            f"invalid integration name {name!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return name


def check_connection_id(connection_id: str) -> str:
    if not CONNECTION_ID.fullmatch(connection_id):
        raise ValueError(
            "invalid connection id: use 1-200 letters, digits or _ . : @ + = -, "
            "starting with a letter or digit"
        )
    return connection_id
