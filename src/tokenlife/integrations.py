"""The integrations file: one `[integrations.NAME]` TOML table per integration.

Loading validates everything that can be checked without the network; a `custom`
integration with an `issuer` gets its endpoints from OIDC Discovery afterwards
(see `adapters.discovery`), then `resolve` applies the preset.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from tokenlife.core.account import AccountEndpoint
from tokenlife.core.integration import (
    Integration,
    authorization_params,
    check_name,
    fill_placeholders,
    requested_scopes,
    token_params,
)
from tokenlife.core.introspection import insecure_introspection_url
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset, reserved_token_params
from tokenlife.core.refresh_timing import RefreshTiming
from tokenlife.core.secret_expiry import to_epoch
from tokenlife.errors import ConfigurationError
from tokenlife.settings import Settings

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]

# tokenlife sets these itself; letting extra_authorization_params replace them would
# break the exchange (redirect_uri must repeat, RFC 6749 §4.1.3) or drop offline scopes.
RESERVED_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)
# Placeholder values become parts of endpoint URLs: a tenant id (GUID), a domain, a realm
# or an instance name, never a path or a query.
PLACEHOLDER_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,253}$")


class IntegrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: str | None = Field(default=None, repr=False)
    client_secret_env: str | None = None
    # When the client secret expires: a TOML date (00:00 UTC) or date-time, or RFC 7591
    # §3.2.1 `client_secret_expires_at` as registration returned it (epoch seconds, 0 = never).
    client_secret_expires_at: datetime | date | int | None = None
    scopes: tuple[str, ...] = ()
    redirect_uri: str
    authorize_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    # RFC 7662; overrides discovery's `introspection_endpoint` and the catalogue's. https
    # only (http on a loopback host): the request carries the token and the credentials.
    introspection_url: str | None = None
    # Overrides the catalogue's account endpoint (a proxy, GitHub Enterprise, a test fake).
    account_url: str | None = None
    issuer: str | None = None
    extra_scopes: tuple[str, ...] = ()
    extra_authorization_params: dict[str, str] = {}
    # Sent with the authorization_code exchange (over the catalogue's token_params) and
    # with every refresh: Zendesk's expires_in for clients older than its refresh tokens.
    extra_token_params: dict[str, str] = {}
    token_endpoint_auth_method: AuthMethod | None = None
    tenant: str | None = None
    placeholders: dict[str, str] = {}
    pkce: bool | None = None
    minimum_access_token_only_lifetime_days: Annotated[float, Field(gt=0, le=3650)] | None = None
    refresh_margin_seconds: Annotated[float, Field(gt=0, le=86400)] | None = None
    refresh_margin_fraction: Annotated[float, Field(ge=0, lt=1)] | None = None
    # Strict: "yes" or 1 for a security switch is a typo to report, not a True.
    allow_account_change: StrictBool = False

    @field_validator("client_secret_expires_at", mode="before")
    @classmethod
    def _expiry(cls, value: Any) -> Any:
        # A number is RFC 7591's epoch seconds as it is, never a date pydantic makes of it.
        if isinstance(value, bool) or (isinstance(value, int | float) and value < 0):
            raise ValueError("must be a date, a date-time or epoch seconds (0: never)")
        return int(value) if isinstance(value, float) else value

    @property
    def all_placeholders(self) -> dict[str, str]:
        """`tenant = ...` is shorthand for `placeholders = { tenant = ... }`."""
        given = dict(self.placeholders)
        if self.tenant is not None:
            given["tenant"] = self.tenant
        return given

    @model_validator(mode="after")
    def _consistent(self) -> IntegrationConfig:
        if self.client_secret is not None and self.client_secret_env is not None:
            raise ValueError("set client_secret or client_secret_env, not both")
        for field in ("redirect_uri", "authorize_url", "token_url", "revocation_url",
                      "introspection_url", "account_url", "issuer"):  # fmt: skip
            value = getattr(self, field)
            if value is not None and not _is_http_url(value):
                raise ValueError(f"{field} must be an absolute http(s) URL")
        if self.introspection_url is not None:
            why = insecure_introspection_url(self.introspection_url)
            if why is not None:
                raise ValueError(f"introspection_url {why}")
        if self.provider == "custom" and self.issuer is None:
            missing = [f for f in ("authorize_url", "token_url") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"a custom provider needs {' and '.join(missing)}, or an issuer to "
                    "discover them from"
                )
        for key, value in self.all_placeholders.items():
            if not PLACEHOLDER_VALUE.fullmatch(value):
                raise ValueError(f"{key} must be a tenant id, a domain or a name, not {value!r}")
        if self.issuer is not None and self.provider != "custom":
            raise ValueError("issuer applies to provider 'custom' only")
        reserved = sorted(RESERVED_PARAMS & set(self.extra_authorization_params))
        if reserved:
            raise ValueError(
                f"extra_authorization_params may not set {', '.join(reserved)}: tokenlife sets "
                "them (use scopes/extra_scopes for scopes)"
            )
        reserved = reserved_token_params(self.extra_token_params)
        if reserved:
            raise ValueError(
                f"extra_token_params may not set {', '.join(reserved)}: tokenlife sets them "
                "(the grant, the code or refresh token, redirect_uri, PKCE and client "
                "authentication), and replacing one would break the token request; scope "
                "belongs in scopes/extra_scopes (a refresh keeps the granted scope)"
            )
        return self


def load_integrations_file(
    path: Path, presets: Mapping[str, Preset], environ: Mapping[str, str]
) -> dict[str, tuple[IntegrationConfig, str | None]]:
    """Parse and validate the file; return each config with its resolved client secret."""
    tables = read_tables(path)
    loaded: dict[str, tuple[IntegrationConfig, str | None]] = {}
    for name, table in tables.items():
        where = f"integrations file {path}, [integrations.{name}]"
        config = validate_table(name, table, presets, where)
        loaded[name] = (config, _client_secret(config, presets[config.provider], environ, where))
    return loaded


def read_tables(path: Path) -> dict[str, Any]:
    """The `[integrations.NAME]` tables of the file, unvalidated."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"integrations file {path}: {exc}") from None
    tables = document.get("integrations")
    if not isinstance(tables, dict):
        raise ConfigurationError(f"integrations file {path}: no [integrations.NAME] tables")
    return tables


def validate_table(
    name: str, table: Any, presets: Mapping[str, Preset], where: str
) -> IntegrationConfig:
    """One table checked on its own; ConfigurationError names what is wrong."""
    try:
        check_name(name)
        config = IntegrationConfig.model_validate(table)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}: {_describe(exc)}") from None
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    if config.provider not in presets:
        known = ", ".join(sorted(presets))
        raise ConfigurationError(f"{where}: unknown provider {config.provider!r} ({known})")
    if config.account_url is not None and presets[config.provider].facts.account is None:
        raise ConfigurationError(
            f"{where}: account_url applies only to providers whose catalogue entry names an "
            f"account endpoint, and {config.provider!r} has none"
        )
    unused = unused_placeholders(config, presets[config.provider])
    if unused:
        raise ConfigurationError(
            f"{where}: {', '.join(unused)} not used by provider {config.provider!r}'s URLs"
        )
    return config


def resolve(
    name: str,
    config: IntegrationConfig,
    preset: Preset,
    client_secret: str | None,
    default_minimum_days: float,
    discovered: tuple[str, str] | None = None,
    default_timing: RefreshTiming = RefreshTiming(),  # noqa: B008 - frozen value object
    require_iss: bool = False,
    discovered_revocation_url: str | None = None,
) -> Integration:
    """Apply the preset. Explicit URLs win over discovered ones, which win over the preset's.

    `require_iss` is the discovery document's `authorization_response_iss_parameter_supported`.
    Revocation: an explicit `revocation_url`, else the catalogue's, else the one the
    discovery document advertises (RFC 8414 §2 `revocation_endpoint`).
    """
    placeholders = {**preset.placeholders, **config.all_placeholders}
    authorize_url = config.authorize_url or (discovered[0] if discovered else preset.authorize_url)
    token_url = config.token_url or (discovered[1] if discovered else preset.token_url)
    if authorize_url is None or token_url is None:
        raise ConfigurationError(f"integration {name}: no authorize_url/token_url")
    try:
        authorize_url = fill_placeholders(authorize_url, placeholders)
        token_url = fill_placeholders(token_url, placeholders)
    except ValueError as exc:
        raise ConfigurationError(f"integration {name}: {exc}") from None
    days = config.minimum_access_token_only_lifetime_days
    return Integration(
        name=name,
        preset=preset,
        client_id=config.client_id,
        client_secret=client_secret,
        scopes=requested_scopes(preset, config.scopes, config.extra_scopes),
        redirect_uri=config.redirect_uri,
        authorize_url=authorize_url,
        token_url=token_url,
        authorization_params=authorization_params(preset, config.extra_authorization_params),
        token_endpoint_auth_method=config.token_endpoint_auth_method
        or preset.token_endpoint_auth_method,
        pkce=preset.pkce if config.pkce is None else config.pkce,
        minimum_access_token_only_lifetime_days=days if days is not None else default_minimum_days,
        refresh_timing=_timing(config, preset, default_timing),
        scope_separator="," if preset.facts.get("scope_separator") == "," else " ",
        revocation_url=config.revocation_url
        or _revocation_url(preset, placeholders)
        or discovered_revocation_url,
        issuer=config.issuer,
        require_iss=require_iss,
        allow_account_change=config.allow_account_change,
        account_endpoint=_account_endpoint(name, config, preset, placeholders),
        introspection_url=config.introspection_url or _introspection_url(preset, placeholders),
        client_secret_expires_at=to_epoch(config.client_secret_expires_at),
        token_params=token_params(preset, config.extra_token_params),
        refresh_params=dict(config.extra_token_params),
    )


def _timing(config: IntegrationConfig, preset: Preset, default: RefreshTiming) -> RefreshTiming:
    """Integration overrides win over the preset, which wins over the settings.

    The refresh-token idle limit is a fact about the provider, so only the preset sets it.
    """
    idle = preset.refresh_token_idle_days
    return RefreshTiming(
        min_margin_seconds=_first(
            config.refresh_margin_seconds,
            preset.refresh_margin_seconds,
            default.min_margin_seconds,
        ),
        margin_fraction=_first(
            config.refresh_margin_fraction,
            preset.refresh_margin_fraction,
            default.margin_fraction,
        ),
        jitter_fraction=default.jitter_fraction,
        refresh_token_idle_seconds=None if idle is None else idle * SECONDS_PER_DAY,
        unknown_lifetime_refresh_seconds=default.unknown_lifetime_refresh_seconds,
    )


def default_timing(settings: Settings) -> RefreshTiming:
    """The settings' refresh timing, which presets and integrations then override."""
    return RefreshTiming(
        min_margin_seconds=settings.refresh_margin_seconds,
        margin_fraction=settings.refresh_margin_fraction,
        unknown_lifetime_refresh_seconds=settings.refresh_unknown_lifetime_seconds,
    )


def _revocation_url(preset: Preset, placeholders: Mapping[str, str]) -> str | None:
    if preset.revocation_url is None:
        return None
    try:
        return fill_placeholders(preset.revocation_url, placeholders)
    except ValueError:
        return None  # a placeholder only revocation needs: revoking is best effort


def _introspection_url(preset: Preset, placeholders: Mapping[str, str]) -> str | None:
    url = preset.facts.introspection_url
    try:
        return None if url is None else fill_placeholders(url, placeholders)
    except ValueError:
        return None  # a placeholder only introspection needs: it is best effort too


def _account_endpoint(
    name: str, config: IntegrationConfig, preset: Preset, placeholders: Mapping[str, str]
) -> AccountEndpoint | None:
    """The catalogue's account endpoint, at the integration's `account_url` if it has one."""
    account = preset.facts.account
    if account is None:
        return None
    try:
        url = config.account_url or fill_placeholders(account.url, placeholders)
    except ValueError as exc:
        raise ConfigurationError(f"integration {name}: {exc}") from None
    return dataclasses.replace(account, url=url)


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def unused_placeholders(config: IntegrationConfig, preset: Preset) -> list[str]:
    """Placeholders given that no URL of the integration uses: a typo, or the wrong provider."""
    urls = " ".join(
        u or "" for u in (config.authorize_url or preset.authorize_url,
                          config.token_url or preset.token_url)
    )  # fmt: skip
    return sorted(k for k in config.all_placeholders if "{" + k + "}" not in urls)


def _client_secret(
    config: IntegrationConfig, preset: Preset, environ: Mapping[str, str], where: str
) -> str | None:
    if config.client_secret_env is not None:
        secret = environ.get(config.client_secret_env)
        if not secret:
            raise ConfigurationError(
                f"{where}: client_secret_env names {config.client_secret_env}, which is unset"
            )
        return secret
    method = config.token_endpoint_auth_method or preset.token_endpoint_auth_method
    if config.client_secret is None and method != "none":
        raise ConfigurationError(
            f"{where}: set client_secret or client_secret_env "
            '(or token_endpoint_auth_method = "none" for a public client)'
        )
    return config.client_secret


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'table'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )
