"""What the OAuth callback brings to the exchange task, and the summary the task returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.integration import Integration
from tokenlife.errors import ProviderError

_MAX_STATE = 512
_MAX_CODE = 4096
_MAX_ISS = 2048


@dataclass(frozen=True, slots=True)
class ExchangeAttempt:
    """One run of the exchange task; a Celery retry keeps `attempt_id` (the task id)."""

    attempt_id: str
    number: int
    final: bool
    # The sent mark an earlier run left although the provider can't have redeemed the code
    # (CodeNotTakenError): this run may send it again. Carried by the Celery retry, so it
    # holds even when Redis failed to clear the mark.
    unsent_at: float | None = None
    # While another attempt holds the state: an `in_progress` summary, where the task is
    # refused as for a used state (its answer is the one /oauth/callback and Celery
    # callers already read). The in-process exchange asks for it, to wait for the owner.
    reports_in_progress: bool = False


def masked_reprs(kwargs: dict[str, Any]) -> dict[str, str]:
    """Celery's `argsrepr`/`kwargsrepr` for an exchange task message (its send and its
    retries): Celery copies them into the message headers (kept by the broker), task events
    and `celery inspect`, so the code and state are masked there; the worker reads the real
    ones from the body.
    https://docs.celeryq.dev/en/stable/userguide/tasks.html#hiding-sensitive-information-in-arguments
    """
    return {"argsrepr": "()", "kwargsrepr": repr(masked(kwargs))}


def masked(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """An exchange's keyword arguments with the code and state shown as ***."""
    return {k: "***" if k in ("code", "state") else v for k, v in kwargs.items()}


def check_callback(state: object, code: object, error: object, iss: object = None) -> str | None:
    """What is wrong with the callback's parameters, or None."""
    if not isinstance(state, str) or not 0 < len(state) <= _MAX_STATE:
        return "state must be a non-empty string"
    if (code is None) == (error is None):
        return "pass exactly one of code and error"
    if code is not None and (not isinstance(code, str) or not 0 < len(code) <= _MAX_CODE):
        return "code must be a non-empty string"
    if error is not None and not isinstance(error, str):
        return "error must be a string"
    if iss is not None and (not isinstance(iss, str) or not 0 < len(iss) <= _MAX_ISS):
        return "iss must be a non-empty string"
    return None


def issuer_problem(integration: Integration, iss: str | None) -> str | None:
    """RFC 9207 §2.4: the callback's `iss` must be exactly the integration's issuer.

    A mismatch means the code may come from another authorization server (a mix-up
    attack); a missing `iss` is refused when the server advertises that it always sends
    one. Without a known issuer (a preset, or a custom integration with explicit URLs)
    there is nothing to compare with, and `iss` is accepted as it comes.
    """
    if iss is None:
        if integration.require_iss:
            return (
                "the callback has no iss, but the authorization server advertises "
                "authorization_response_iss_parameter_supported (RFC 9207)"
            )
        return None
    if integration.issuer is not None and iss != integration.issuer:
        return (
            "the callback's iss is not this integration's issuer: the response may come "
            "from another authorization server (mix-up attack, RFC 9207)"
        )
    return None


def error_code(exc: ProviderError) -> str:
    return str(getattr(exc, "error", "provider_error"))


def described_params(pending: PendingAuthorization) -> dict[str, str]:
    # What a person needs to see: the offline-access knobs, not client_id or redirect_uri.
    keys = ("access_type", "prompt", "response_type", "code_challenge_method")
    return {k: pending.params[k] for k in keys if k in pending.params}


def summary(
    integration: str | None,
    connection_id: str | None,
    *,
    outcome: str,
    status: str | None = None,
    expires_at: str | None = None,
    refresh_token_received: bool = False,
    error: str | None = None,
    error_description: str | None = None,
    return_to: str | None = None,
    fixes: list[str] | None = None,
    diagnosis: list[dict[str, str | None]] | None = None,
) -> dict[str, Any]:
    """What the exchange task returns: never a token value. `diagnosis` ({cause, fix,
    evidence, source}, core/authorization_errors.py) explains a failed exchange."""
    return {
        "return_to": return_to,
        "fixes": fixes or [],
        "diagnosis": diagnosis or [],
        "integration": integration,
        "connection_id": connection_id,
        "outcome": outcome,
        "status": status,
        "expires_at": expires_at,
        "refresh_token_received": refresh_token_received,
        "error": error,
        "error_description": error_description,
    }
