"""Why did the provider refuse the authorization, and what to change? A table of rules over
the `error` (and `error_description`) of the callback or the token endpoint.

Every cause names its evidence and the vendor or specification text it rests on. Vendor
codes inside `error_description` (Microsoft's AADSTS numbers) win over the generic RFC 6749
code they arrive under (`invalid_client`, `invalid_request`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tokenlife.core.authorization_error_vendors import (
    GOOGLE_ERRORS,
    MICROSOFT_CODES,
    OTHER,
    OWN_FIXES,
    REDIRECT_MISMATCH,
    RFC6749_AUTHORIZATION,
    STANDARD_ERRORS,
    VendorRule,
)
from tokenlife.core.diagnosis import Cause
from tokenlife.core.integration import split_scope

Severity = Literal["critical", "warning", "info"]

OIDC_PROMPT = "https://openid.net/specs/openid-connect-core-1_0.html#AuthRequest"
# `prompt_values_supported` is discovery metadata of "Initiating User Registration via
# OpenID Connect 1.0" §4, not of OIDC Discovery itself: many servers don't publish it.
PROMPT_METADATA = "https://openid.net/specs/openid-connect-prompt-create-1_0.html#section-4"
MAX_DESCRIPTION = 500  # provider-controlled text: bounded wherever it is kept or shown
MAX_ERROR = 64
_AADSTS = re.compile(r"\bAADSTS(\d{5,7})\b")
# RFC 6749 §4.1.2.1: error is %x20-21 / %x23-5B / %x5D-7E; no quotes or backslashes.
_NOT_ERROR_CHAR = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Refusal:
    """What is known of one refused authorization; only what may be shown to people
    (never the code, the state or a token)."""

    error: str
    description: str | None = None
    provider: str = "custom"
    # The authorization request's scope and prompt, as sent (other parameters unused).
    scope: str = ""
    prompt: str | None = None
    redirect_uri: str | None = None
    # The catalogue's offline scopes for this provider (e.g. X's offline.access).
    offline_scopes: tuple[str, ...] = ()
    # From the discovery document, where the server publishes it.
    prompt_values_supported: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    key: str  # the cause, stable: alerts are deduplicated per integration and key
    severity: Severity
    causes: tuple[Cause, ...] = field(default=())

    def as_list(self) -> list[dict[str, str | None]]:
        return [cause.as_dict() for cause in self.causes]


def clean_error(error: str) -> str:
    """An `error` parameter as kept: RFC 6749's characters only, bounded (it comes from a
    browser's query string as easily as from the provider)."""
    cleaned = _NOT_ERROR_CHAR.sub("", error).strip()[:MAX_ERROR]
    return cleaned or "unknown_error"


def bounded(
    text: str | None, limit: int = MAX_DESCRIPTION, conceal: tuple[str | None, ...] = ()
) -> str | None:
    """Provider text on one line and at most `limit` characters, each `conceal` value (the
    code, the state: a provider may echo them) masked."""
    if text is None:
        return None
    for secret in conceal:
        if secret:
            text = text.replace(secret, "***")
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def diagnose_refusal(r: Refusal) -> Diagnosis:
    """The likely causes of a refused authorization or code, most likely first: vendor
    codes, then what the description says of an `invalid_request`, then the error code."""
    known = _aadsts(r) or GOOGLE_ERRORS.get(r.error)
    if known is None and r.error == "invalid_request":
        if _describes(r, "redirect_uri", "redirect uri"):
            known = REDIRECT_MISMATCH
        elif _describes(r, "prompt"):
            return Diagnosis("prompt_unsupported", "critical", tuple(_prompt(r)))
    if known is None and r.error == "invalid_scope":
        return Diagnosis("invalid_scope", "critical", tuple(_scope(r)))
    if known is None and r.error == "access_denied":
        return Diagnosis("access_denied", "info", tuple(_denied(r)))
    if known is None and r.error in OWN_FIXES:
        fix = OWN_FIXES[r.error]
        cause = Cause(bounded(r.description) or r.error, fix, f"error={r.error}", None)
        return Diagnosis(r.error, "warning", (cause,))
    known = known or STANDARD_ERRORS.get(r.error, OTHER)
    fix = known.fix.format(redirect_uri=r.redirect_uri or "the integration's redirect_uri")
    return Diagnosis(known.key, known.severity, (Cause(known.cause, fix, _said(r), known.source),))


def _said(r: Refusal) -> str:
    said = f"error={r.error}"
    return said + (f"; error_description: {bounded(r.description, 200)}" if r.description else "")


def _aadsts(r: Refusal) -> VendorRule | None:
    found = _AADSTS.search(r.description or "")
    return MICROSOFT_CODES.get(found.group(1)) if found else None


def _describes(r: Refusal, *words: str) -> bool:
    text = (r.description or "").lower()
    return any(word in text for word in words)


def _prompt(r: Refusal) -> list[Cause]:
    sent = r.prompt if r.prompt is not None else "(none)"
    supported = r.prompt_values_supported
    value = prompt_to_use(supported)
    listed = (f"prompt_values_supported in its discovery document: {' '.join(supported)}"
              if supported is not None else "no prompt_values_supported published")  # fmt: skip
    fix = (f'Send prompt={value}: set extra_authorization_params.prompt = "{value}" in the '
           "integration." if value else 'This server supports no prompt value to send: set '
           'extra_authorization_params.prompt = "" in the integration.')  # fmt: skip
    if supported is None:
        fix += (" OpenID Connect defines none, login, consent and select_account, and a "
                "server may support only some; consent is also what offline access needs "
                "(OIDC Core §11).")  # fmt: skip
    return [
        Cause(
            f"The provider refused the prompt value that was sent: prompt={sent}.",
            fix,
            f"{_said(r)}; prompt sent: {sent}; {listed}",
            PROMPT_METADATA if supported is not None else OIDC_PROMPT,
        )
    ]


def prompt_to_use(supported: tuple[str, ...] | None) -> str:
    """consent where it can be sent (offline access needs it, OIDC Core §11), else login;
    none and select_account never bring consent back."""
    if supported is None:
        return "consent"
    return next((v for v in ("consent", "login") if v in supported), "")


def _scope(r: Refusal) -> list[Cause]:
    sent = split_scope(r.scope)
    text = r.description or ""
    named = [s for s in sent if re.search(rf"(?<![\w.:/-]){re.escape(s)}(?![\w.:/-])", text)]
    named = named or list(sent)
    causes = []
    for scope in sent:
        spelled = [s for s in r.offline_scopes if s != scope and _same_scope(s, scope)]
        if spelled:
            causes.append(Cause(
                f"The offline-access scope was sent as {scope}, but {r.provider} spells it "
                f"{spelled[0]}.",
                f"Request {spelled[0]} instead of {scope} (scopes or extra_scopes).",
                f"scopes sent: {' '.join(sent)}; {_said(r)}",
                RFC6749_AUTHORIZATION,
            ))  # fmt: skip
    causes.append(Cause(
        f"The provider does not accept the scope{'s' if len(named) > 1 else ''} "
        f"{' '.join(named) or '(none sent)'} for this client: unknown, misspelt, or not "
        "enabled for the app.",
        f"Remove {' '.join(named) or 'the scope'} from the integration's scopes/extra_scopes, "
        "or enable it for the client at the provider"
        + (f" (the catalogue spells {r.provider}'s offline scope {' '.join(r.offline_scopes)})."
           if r.offline_scopes else "."),
        f"scopes sent: {' '.join(sent) or '(none)'}; {_said(r)}",
        RFC6749_AUTHORIZATION,
    ))  # fmt: skip
    return causes


def _same_scope(a: str, b: str) -> bool:
    return re.sub(r"[._:-]", "", a.lower()) == re.sub(r"[._:-]", "", b.lower())


def _denied(r: Refusal) -> list[Cause]:
    causes = [Cause(
        "The user declined the consent screen (or closed it with Cancel).",
        "Nothing to change if that was the user's choice; otherwise ask them to connect again "
        "and allow access.",
        _said(r),
        RFC6749_AUTHORIZATION,
    )]  # fmt: skip
    if r.provider == "google":
        causes.append(Cause(
            "The app's publishing status is 'Testing' and this user is not one of its test "
            "users.",
            "Add the user under Google Auth Platform > Audience > Test users, or publish the "
            "app (In production).",
            _said(r),
            "https://support.google.com/cloud/answer/15549945",
        ))  # fmt: skip
    causes.append(Cause(
        "A policy of the user's organization at the provider blocks this app or a requested "
        "scope for the user.",
        "Ask the organization's administrator to allow the app (by its client_id) for this "
        "user, or request fewer scopes.",
        _said(r),
        RFC6749_AUTHORIZATION,
    ))  # fmt: skip
    return causes
