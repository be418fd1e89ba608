"""Token sets and the token endpoint response (RFC 6749 §5.1 success, §5.2 error)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from tokenlife.errors import (
    InvalidResponseError,
    RateLimitedError,
    ServerError,
    oauth_error,
)

# Longer than any real provider issues (Facebook's 60 days, Atlassian's 1 year);
# anything above is a unit mix-up (milliseconds) or garbage, not a lifetime.
MAX_EXPIRES_IN_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What a token endpoint issued. `expires_at` is absolute, so no clock is read later."""

    access_token: str
    token_type: str
    refresh_token: str | None
    expires_at: float | None
    lifetime_seconds: int | None
    # "expires_in", "jwt_exp", "introspection" (core/introspection.py) or None when unknown
    lifetime_source: str | None
    granted_scopes: tuple[str, ...] | None  # None when the response had no `scope`
    # OIDC Core §3.1.3.3: who the account is. Read at the exchange (core/id_token.py),
    # never stored; None when the response had none.
    id_token: str | None = None

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return (
            f"TokenSet(token_type={self.token_type!r}, has_refresh_token="
            f"{self.refresh_token is not None}, expires_at={self.expires_at!r})"
        )


def parse_token_response(
    status: int,
    content_type: str,
    body: bytes,
    now: float,
    retry_after: float | None = None,
) -> TokenSet:
    """Turn a token endpoint answer into a TokenSet or raise the matching error.

    5xx and 429 are transient whatever the body says; other non-200 answers must be
    an RFC 6749 §5.2 JSON error object.
    """
    if status == 429:
        raise RateLimitedError(retry_after)
    if status >= 500:
        raise ServerError(status)
    payload = _json_object(content_type, body, status)
    # Some vendors answer errors with HTTP 200 and an `error` field: GitHub's OAuth apps,
    # and Slack with {"ok": false, "error": ...}. Without an access_token it is an error.
    if status == 200 and "access_token" not in payload and isinstance(payload.get("error"), str):
        status = 400
    if status != 200:
        error = payload.get("error")
        if not isinstance(error, str) or not error:
            raise InvalidResponseError(f"HTTP {status} without an OAuth `error` field")
        description = payload.get("error_description")
        uri = payload.get("error_uri")
        raise oauth_error(
            error,
            description if isinstance(description, str) else None,
            uri if isinstance(uri, str) else None,
        )
    return token_set_from_payload(payload, now)


def token_set_from_payload(payload: dict[str, Any], now: float) -> TokenSet:
    """Validate a §5.1 success object; lifetime falls back to the `exp` of a JWT access token."""
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise InvalidResponseError("response has no access_token")
    token_type = payload.get("token_type", "Bearer")
    if not isinstance(token_type, str) or not token_type:
        raise InvalidResponseError("token_type is not a string")
    refresh_token = payload.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise InvalidResponseError("refresh_token is not a non-empty string")

    lifetime = parse_expires_in(payload.get("expires_in"))
    source = "expires_in" if lifetime is not None else None
    expires_at = now + lifetime if lifetime is not None else None
    if lifetime is None:
        exp = jwt_expiry(access_token)
        # An `exp` in milliseconds (or garbage) is no lifetime: treat it as unknown.
        if exp is not None and exp - now <= MAX_EXPIRES_IN_SECONDS:
            lifetime, source, expires_at = max(0, int(exp - now)), "jwt_exp", float(exp)

    return TokenSet(
        access_token=access_token,
        token_type=token_type,
        refresh_token=refresh_token,
        expires_at=expires_at,
        lifetime_seconds=lifetime,
        lifetime_source=source,
        granted_scopes=parse_scope(payload.get("scope")),
        id_token=_id_token(payload.get("id_token")),
    )


def _id_token(value: Any) -> str | None:
    # Only a string can be a JWT; anything else is checked as "no ID token".
    return value if isinstance(value, str) and value else None


def parse_expires_in(value: Any) -> int | None:
    """RFC 6749 §5.1 says a number of seconds; some providers send it as a string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidResponseError("expires_in is a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidResponseError("expires_in is not numeric") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidResponseError("expires_in is not a finite number")
    if value > MAX_EXPIRES_IN_SECONDS:
        raise InvalidResponseError(f"expires_in is implausibly large ({value} s)")
    seconds = int(value)
    if seconds <= 0:
        raise InvalidResponseError(f"expires_in is not a positive number of seconds ({value})")
    return seconds


def parse_scope(value: Any) -> tuple[str, ...] | None:
    """§5.1: `scope` is space-delimited; a few providers send a JSON list or commas."""
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(str(s) for s in value if str(s))
    if isinstance(value, str):
        return tuple(s for s in value.replace(",", " ").split() if s)
    raise InvalidResponseError("scope is neither a string nor a list")


def jwt_expiry(token: str) -> int | None:
    """The `exp` claim of a JWT, decoded without verifying (we only want the lifetime)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return int(exp)


def _json_object(content_type: str, body: bytes, status: int) -> dict[str, Any]:
    # Content types are often wrong (text/plain, text/javascript), so parse first and
    # only name the content type in the error.
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        kind = content_type.split(";")[0].strip() or "no content type"
        raise InvalidResponseError(
            f"HTTP {status} body is not JSON ({kind}, {len(body)} bytes)"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidResponseError(f"HTTP {status} body is JSON but not an object")
    return payload
