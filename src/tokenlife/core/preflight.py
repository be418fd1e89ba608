"""Preflight: what is wrong with an integration before any user connects an account.

Pure checks over a resolved integration, what the environment said about its secret, and
the issuer's discovery document when it has one. Each finding names a fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from tokenlife.core.authorization_errors import prompt_to_use
from tokenlife.core.diagnosis import detect_vendor
from tokenlife.core.integration import Integration
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset
from tokenlife.core.secret_expiry import preflight_state, rotation_steps

Severity = Literal["error", "warning"]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
OFFLINE_ACCESS = "https://openid.net/specs/openid-connect-core-1_0.html#OfflineAccess"
# Where prompt_values_supported is defined (OP metadata of "Initiating User Registration
# via OpenID Connect 1.0").
PROMPT_VALUES = "https://openid.net/specs/openid-connect-prompt-create-1_0.html"


@dataclass(frozen=True, slots=True)
class Finding:
    integration: str
    severity: Severity
    code: str
    message: str
    fix: str
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_integration(
    integration: Integration,
    presets: Mapping[str, Preset],
    discovery: Mapping[str, Any] | None = None,
    default_minimum_days: float | None = None,
    now: float | None = None,
) -> list[Finding]:
    """Every finding for one resolved integration, errors first.

    `default_minimum_days` is the setting's threshold: only an integration that overrides
    it is checked against the provider's documented access-token lifetime. `now` (when
    given) checks `client_secret_expires_at`.
    """
    found = [
        *_vendor_behind_custom(integration, presets),
        *_offline_access_without_consent(integration, presets),
        *_refresh_token_requirements(integration, presets),
        *_redirect_uri(integration),
        *_pkce(integration),
        *_threshold(integration, default_minimum_days),
        *_discovery(integration, discovery),
        *_client_secret_expiry(integration, now),
    ]
    return sorted(found, key=lambda f: f.severity != "error")


def _finding(integration: Integration, severity: Severity, code: str, message: str,
             fix: str, source: str | None = None) -> Finding:  # fmt: skip
    return Finding(integration.name, severity, code, message, fix, source)


def _vendor_behind_custom(integration: Integration, presets: Mapping[str, Preset]) -> list[Finding]:
    vendor = detect_vendor(integration, presets)
    if vendor is None:
        return []
    preset, evidence = vendor
    return [
        _finding(
            integration, "error", "use_catalogued_provider",
            f"The integration uses provider 'custom', but {evidence}: none of "
            f"{preset.title}'s refresh-token rules are applied.",
            f'Use provider "{preset.name}"' + (
                # A national cloud or a B2C/CIAM tenant is not the preset's own host.
                "; keep authorize_url and token_url: they are not the preset's default host."
                if _off_default_host(integration, preset) else "."
            ),
        )
    ]  # fmt: skip


def _off_default_host(integration: Integration, preset: Preset) -> bool:
    default = urlsplit(preset.authorize_url).hostname
    configured = urlsplit(integration.authorize_url).hostname
    return bool(configured and default and configured != default)


def _refresh_token_requirements(
    integration: Integration, presets: Mapping[str, Preset]
) -> list[Finding]:
    vendor = detect_vendor(integration, presets)
    rules = vendor[0] if vendor else integration.preset
    params = dict(integration.authorization_params)
    found = []
    for req in rules.requires:
        if req.satisfied_by(integration.scopes, params):
            continue
        if _oidc_offline_rules_apply(integration, presets) and req.param == "prompt":
            continue  # offline_access_without_consent says it, as an error
        what = f"scope {req.scope}" if req.scope else f"{req.param}={req.value}"
        fix = (
            f"Add {req.scope} to scopes or extra_scopes."
            if req.scope
            else f'Set extra_authorization_params.{req.param} = "{req.value}".'
        )
        severity: Severity = "error" if req.strength == "required" else "warning"
        found.append(
            _finding(integration, severity, "refresh_token_requirement_missing",
                     f"The authorization request lacks {what}. {req.why}", fix, req.source)
        )  # fmt: skip
    return found


def _oidc_offline_rules_apply(integration: Integration, presets: Mapping[str, Preset]) -> bool:
    """A `custom` integration with no catalogued vendor behind it, requesting offline_access:
    only OpenID Connect's own rules can tell whether a refresh token will come."""
    return (
        integration.provider == "custom"
        and detect_vendor(integration, presets) is None
        and "offline_access" in integration.scopes
    )


def _offline_access_without_consent(
    integration: Integration, presets: Mapping[str, Preset]
) -> list[Finding]:
    """OIDC Core §11: "When offline access is requested, a prompt parameter value of consent
    MUST be used unless other conditions for processing the request permitting offline
    access to the requested resources are in place"; a server that follows it drops
    offline_access, and no refresh token comes. The custom default prompt=select_account is
    the trap: it looks harmless and is not consent."""
    if not _oidc_offline_rules_apply(integration, presets):
        return []
    prompt = integration.authorization_params.get("prompt", "").strip()
    if "consent" in prompt.split():
        return []
    sent = f"prompt={prompt}" if prompt else "no prompt"
    default = " (the custom default)" if prompt == _custom_default_prompt(presets) else ""
    return [
        _finding(
            integration, "error", "offline_access_without_consent",
            f"The integration requests offline_access with {sent}{default}. OpenID Connect "
            "Core §11: a server must ignore offline_access unless prompt contains consent "
            f"(or it has another reason to allow offline access), so {sent} is why the "
            "server may drop offline access and issue no refresh token.",
            'Set extra_authorization_params.prompt = "consent" for this integration (the '
            "server then asks the user to consent to offline access at every connect).",
            OFFLINE_ACCESS,
        )
    ]  # fmt: skip


def _custom_default_prompt(presets: Mapping[str, Preset]) -> str | None:
    custom = presets.get("custom")
    return None if custom is None else custom.authorization_params.get("prompt")


def _redirect_uri(integration: Integration) -> list[Finding]:
    parts = urlsplit(integration.redirect_uri)
    if parts.scheme == "https" or (parts.hostname or "") in LOCAL_HOSTS:
        return []
    return [
        _finding(
            integration, "error", "redirect_uri_not_https",
            f"redirect_uri {integration.redirect_uri} is not HTTPS: the authorization code "
            "travels in the clear, and most providers refuse it outside localhost.",
            "Serve the callback over HTTPS and register the https:// URI.",
            "https://www.rfc-editor.org/rfc/rfc6749#section-3.1.2.1",
        )
    ]  # fmt: skip


def _pkce(integration: Integration) -> list[Finding]:
    support = integration.preset.facts.get("pkce")
    source = integration.preset.facts.sources.get("pkce")
    if integration.pkce and support == "unsupported":
        return [_finding(integration, "error", "pkce_unsupported",
                         f"{integration.preset.title} rejects PKCE parameters, and PKCE is on.",
                         "Set pkce = false for this integration.", source)]  # fmt: skip
    if not integration.pkce and support == "required":
        return [_finding(integration, "error", "pkce_required",
                         f"{integration.preset.title} requires PKCE, and PKCE is off.",
                         "Remove pkce = false from this integration.", source)]  # fmt: skip
    return []


def _threshold(integration: Integration, default_days: float | None) -> list[Finding]:
    documented = integration.preset.facts.access_token_lifetime_seconds
    days = integration.minimum_access_token_only_lifetime_days
    if documented is None or days == default_days or days * SECONDS_PER_DAY > documented:
        return []
    return [
        _finding(
            integration, "error", "threshold_below_access_token_lifetime",
            f"minimum_access_token_only_lifetime_days = "
            f"{integration.minimum_access_token_only_lifetime_days:g} accepts an access token "
            f"of {integration.preset.title}'s documented lifetime ({documented} s) without a "
            "refresh token, so a missing refresh token would pass silently and the "
            "connection would lapse.",
            f"Raise it above {documented / SECONDS_PER_DAY:.3f} days, or remove the override.",
            integration.preset.facts.sources.get("access_token_lifetime"),
        )
    ]  # fmt: skip


def _discovery(integration: Integration, document: Mapping[str, Any] | None) -> list[Finding]:
    if document is None:
        return []
    found = []
    scopes = document.get("scopes_supported")
    if isinstance(scopes, list) and "offline_access" not in scopes:
        found.append(_finding(
            integration, "warning", "discovery_without_offline_access",
            "The issuer's discovery document does not list offline_access in "
            "scopes_supported: requesting it may not yield a refresh token.",
            "Check the server's client settings for offline access / refresh tokens.",
            "https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata",
        ))  # fmt: skip
    found += _prompt_values(integration, document.get("prompt_values_supported"))
    grants = document.get("grant_types_supported")
    # RFC 8414 §2: when omitted, the default is authorization_code and implicit only.
    if not isinstance(grants, list) or "refresh_token" not in grants:
        found.append(_finding(
            integration, "warning", "discovery_without_refresh_token_grant",
            "The issuer's discovery document does not advertise the refresh_token grant "
            "type.",
            "Enable the refresh token grant for this client at the server, or expect no "
            "refresh tokens.",
            "https://www.rfc-editor.org/rfc/rfc8414#section-2",
        ))  # fmt: skip
    return found


def _prompt_values(integration: Integration, supported: Any) -> list[Finding]:
    """A server that publishes prompt_values_supported refuses the others with
    invalid_request ("unsupported prompt value requested"): every connect would fail, and
    the custom default select_account is the value most often missing."""
    prompt = integration.authorization_params.get("prompt", "").split()
    if not isinstance(supported, list) or not prompt:
        return []
    refused = [value for value in prompt if value not in supported]
    if not refused:
        return []
    offered = " ".join(str(v) for v in supported) or "(none)"
    usable = prompt_to_use(tuple(str(v) for v in supported))
    fix = (
        f'Set extra_authorization_params.prompt = "{usable}".'
        if usable
        # none and select_account never show consent: a server offering only those can't
        # be asked for offline access interactively (OIDC Core §11).
        else "Remove prompt from extra_authorization_params: the server offers neither "
        "consent nor login, and prompt=none fails every interactive connect (login_required)."
    )
    return [
        _finding(
            integration, "error", "prompt_value_unsupported",
            f"The integration sends prompt={' '.join(prompt)}, but the issuer's discovery "
            f"document lists only {offered} in prompt_values_supported: the server will "
            f"refuse every authorization request for {' '.join(refused)} (invalid_request).",
            fix, PROMPT_VALUES,
        )
    ]  # fmt: skip


def _client_secret_expiry(integration: Integration, now: float | None) -> list[Finding]:
    """A client secret past or within 30 days of its `client_secret_expires_at`."""
    expires_at = integration.client_secret_expires_at
    if now is None or expires_at is None:
        return []
    state = preflight_state(expires_at, now)
    if state == "ok":
        return []
    steps, source = rotation_steps(integration)
    when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if state == "expired":
        return [_finding(
            integration, "error", "client_secret_expired",
            f"The client secret expired at {when} (client_secret_expires_at): the provider "
            "will refuse every refresh and every new connection of this integration, unless "
            "the secret was rotated and client_secret_expires_at is stale (then set the new "
            "date).",
            steps, source,
        )]  # fmt: skip
    days = (expires_at - now) / SECONDS_PER_DAY
    return [_finding(
        integration, "warning", "client_secret_expiring",
        f"The client secret expires at {when}, in {days:.1f} days (client_secret_expires_at). "
        "Beat alerts 30, 7 and 1 days ahead (alert.client_secret_expiring); the worker's "
        "start only logs this.",
        steps, source,
    )]  # fmt: skip
