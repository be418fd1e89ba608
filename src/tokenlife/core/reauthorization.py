"""Why did a refresh fail for good? Likely causes from the preset, then generic ones."""

from __future__ import annotations

from tokenlife.core.diagnosis import Cause
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset


def diagnose_reauthorization(
    preset: Preset,
    generic: Preset,
    *,
    error: str,
    description: str | None,
    idle_seconds: float | None,
) -> list[Cause]:
    """Rules that name a detail of the description (an AADSTS code) come first, then the
    preset's rules for the error code, then the generic ones from `generic`."""
    evidence = f"the provider answered {error}" + (f": {description}" if description else "")
    if idle_seconds is not None:
        evidence += f" (last successful refresh {idle_seconds / SECONDS_PER_DAY:.1f} days ago)"
    specific = [r for r in preset.reauthorization if r.description_contains]
    by_code = [r for r in preset.reauthorization if not r.description_contains]
    fallback = [r for r in generic.reauthorization if r not in preset.reauthorization]
    causes: list[Cause] = []
    for rule in (*specific, *by_code, *fallback):
        if rule.matches(error, description) and all(c.cause != rule.cause for c in causes):
            causes.append(
                Cause(cause=rule.cause, fix=rule.fix, evidence=evidence, source=rule.source)
            )
    if not causes:
        causes.append(
            Cause(
                cause=f"The provider refused the refresh token with {error}.",
                fix="Ask the user to connect the account again.",
                evidence=evidence,
            )
        )
    return causes


# RFC 6749 §5.2 codes after which the same refresh token will never work again.
PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


def is_permanent(error: str, preset: Preset) -> bool:
    """RFC 6749's codes, plus a vendor's own codes for a dead grant (Slack's
    invalid_refresh_token) that its catalogue entry names as a re-authorization cause."""
    return error in PERMANENT_ERRORS or any(rule.error == error for rule in preset.reauthorization)
