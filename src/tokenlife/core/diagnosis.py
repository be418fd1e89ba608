"""Why did no refresh token come back? Causes and fixes from the preset and what was sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import IntEnum
from urllib.parse import urlsplit

from tokenlife.core.integration import Integration, split_scope
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset, Requirement


@dataclass(frozen=True, slots=True)
class Cause:
    cause: str
    fix: str
    evidence: str
    source: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def detect_vendor(
    integration: Integration, presets: Mapping[str, Preset]
) -> tuple[Preset, str] | None:
    """A catalogued vendor behind a `custom` integration, and the evidence for it.

    Endpoint hosts are the strong signal; vendor scope URLs catch proxies and test
    doubles whose host tells nothing.
    """
    if integration.provider != "custom":
        return None
    hosts = {urlsplit(u).hostname or "" for u in (integration.authorize_url, integration.token_url)}
    for preset in presets.values():
        if preset.name == "custom":
            continue
        for host in sorted(hosts):
            if preset.matches_host(host):
                return preset, f"the endpoint host {host} belongs to {preset.title}"
        for scope in integration.scopes:
            if preset.matches_scope(scope):
                return preset, f"the requested scope {scope} belongs to {preset.title}"
    return None


class Likelihood(IntEnum):
    """How strongly the evidence points at a cause; causes are listed in this order."""

    WRONG_PROVIDER = 0  # none of the vendor's rules were applied: everything else follows
    DOCUMENTED_CONDITION_UNMET = 1  # the vendor documents it as a condition, and it was unmet
    SCOPE_NOT_REQUESTED = 2  # a scope that likely carries offline access was not asked for
    PARAMETER_NOT_SENT = 3  # a parameter the server likely needs was not sent
    # The request was complete, yet the grant lacks the offline scope: the user or an admin
    # declined it. Below a parameter that was not sent: a server that drops offline_access
    # (OIDC Core §11 without prompt=consent) leaves the very same evidence.
    NOT_GRANTED = 4
    NOTHING_KNOWN_MISSING = 5


def diagnose_missing_refresh_token(
    integration: Integration,
    presets: Mapping[str, Preset],
    sent_params: Mapping[str, str],
    granted_scopes: tuple[str, ...] | None,
    lifetime_seconds: int | None,
) -> list[Cause]:
    """Most likely cause first (`Likelihood`, then the preset's order). Every cause names
    the evidence it rests on."""
    ranked: list[tuple[Likelihood, Cause]] = []
    rules = integration.preset
    vendor = detect_vendor(integration, presets)
    if vendor is not None:
        rules, evidence = vendor
        ranked.append((
            Likelihood.WRONG_PROVIDER,
            Cause(
                cause=f"The integration uses provider 'custom', but {evidence}, so none of "
                f"{rules.title}'s refresh-token requirements were applied.",
                fix=f'Use provider "{rules.name}": set provider = "{rules.name}" '
                "in the integration.",
                evidence=evidence,
            ),
        ))  # fmt: skip
    scopes = split_scope(sent_params.get("scope", ""))
    dropped = _dropped_offline_scopes(rules, scopes, granted_scopes)
    for requirement in rules.requires:
        found = _unmet(requirement, scopes, sent_params, granted_scopes, dropped)
        if found is not None:
            ranked.append(found)
    if not ranked:
        nothing = _nothing_known_missing(integration, lifetime_seconds)
        ranked.append((Likelihood.NOTHING_KNOWN_MISSING, nothing))
    return [cause for _, cause in sorted(ranked, key=lambda pair: pair[0])]


def _dropped_offline_scopes(
    rules: Preset, scopes: tuple[str, ...], granted: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Offline scopes that were requested but are missing from the granted scope (only
    where the vendor echoes them, so that absence means something)."""
    if granted is None or not rules.echoes_offline_scope:
        return ()
    wanted = [r.scope for r in rules.requires if r.scope is not None]
    return tuple(s for s in wanted if s in scopes and s not in granted)


def _unmet(
    req: Requirement,
    scopes: tuple[str, ...],
    params: Mapping[str, str],
    granted: tuple[str, ...] | None,
    dropped: tuple[str, ...],
) -> tuple[Likelihood, Cause] | None:
    documented = req.strength == "required"
    if req.scope is not None and req.scope not in scopes:
        likely = Likelihood.SCOPE_NOT_REQUESTED
        return Likelihood.DOCUMENTED_CONDITION_UNMET if documented else likely, Cause(
            cause=f"The {req.scope} scope wasn't requested. {req.why}",
            fix=f"Add {req.scope} to the integration's scopes (or extra_scopes).",
            evidence=f"scopes sent: {' '.join(scopes) or '(none)'}",
            source=req.source,
        )
    if req.scope is not None:
        if req.scope not in dropped:
            return None
        return Likelihood.NOT_GRANTED, Cause(
            cause=f"{req.scope} was requested but the granted scope came back without it: "
            "the user or an admin didn't grant offline access.",
            fix=f"Ask the user to reconnect and accept offline access, or have an admin "
            f"allow {req.scope} for this client.",
            evidence=f"scope granted: {' '.join(granted or ()) or '(empty)'}",
            source=req.source,
        )
    if req.satisfied_by(scopes, params):
        return None
    sent = params.get(req.param or "")
    shown = f"{req.param}={sent}" if sent is not None else f"no {req.param}"
    evidence = f"parameters sent: {_format(params)}"
    if dropped:
        # The server's answer agrees: what this parameter gates did not come back.
        evidence += f"; granted scope lacks {' '.join(dropped)}"
    likely = Likelihood.PARAMETER_NOT_SENT
    return Likelihood.DOCUMENTED_CONDITION_UNMET if documented else likely, Cause(
        cause=f"The authorization request carried {shown}. {req.why}",
        fix=f"Send {req.param}={req.value} (extra_authorization_params.{req.param} = "
        f'"{req.value}").',
        evidence=evidence,
        source=req.source,
    )


def _nothing_known_missing(integration: Integration, lifetime: int | None) -> Cause:
    days = "unknown" if lifetime is None else f"{lifetime / SECONDS_PER_DAY:.2f} days"
    return Cause(
        cause=f"Everything tokenlife knows {integration.preset.title} to need was sent, "
        "yet no refresh token came back.",
        fix="Check that the client registration at the provider allows the refresh_token "
        "grant / offline access. Only if this provider never issues refresh tokens and its "
        "access tokens really last long enough, lower "
        "minimum_access_token_only_lifetime_days for this integration.",
        evidence=f"access token lifetime returned: {days}",
    )


def _format(params: Mapping[str, str]) -> str:
    keys = ("scope", "access_type", "prompt")
    shown = [f"{k}={params[k]}" for k in keys if k in params]
    return ", ".join(shown) or "(none of scope, access_type, prompt)"
