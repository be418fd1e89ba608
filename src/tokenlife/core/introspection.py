"""RFC 7662 token introspection: learning the lifetime of a token that states none.

Salesforce (and any server that returns opaque tokens without `expires_in`) leaves the
lifetime unknown; where the server publishes an introspection endpoint, its answer's
`exp` tells when the access token dies (https://www.rfc-editor.org/rfc/rfc7662).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from tokenlife.core.client_auth import METHODS
from tokenlife.core.grants import TokenRequest
from tokenlife.core.integration import Integration
from tokenlife.core.tokens import MAX_EXPIRES_IN_SECONDS, TokenSet
from tokenlife.errors import InvalidResponseError

LIFETIME_SOURCE = "introspection"
# Plain http only to these: the test fakes, a local proxy. Anywhere else the request would
# carry the new access token and the client's credentials in clear text.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# How long a failing endpoint is left alone (and its warning not repeated) in a process.
FAILURE_TTL_SECONDS = 600.0


def insecure_introspection_url(url: str) -> str | None:
    """Why `url` may not be asked, or None. RFC 7662 §4 requires TLS for the endpoint
    (https://www.rfc-editor.org/rfc/rfc7662#section-4): the request carries the access
    token and the client's credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return None
    return (
        "must be an https URL (RFC 7662 §4 requires TLS: the request carries the access "
        "token and the client's credentials); http only on a loopback host"
    )


class FailureMemory:
    """Introspection endpoints that failed lately, per integration and URL, so a failing
    one is not asked (nor warned about) on every exchange and refresh: once per
    `ttl` at most. A success forgets the failure. In-process only; pure (time passed in)."""

    def __init__(self, ttl: float = FAILURE_TTL_SECONDS) -> None:
        self._ttl = ttl
        self._until: dict[tuple[str, str], float] = {}

    def holds(self, key: tuple[str, str], now: float) -> bool:
        until = self._until.get(key)
        if until is not None and now >= until:
            del self._until[key]
            return False
        return until is not None

    def failed(self, key: tuple[str, str], now: float) -> None:
        self._until[key] = now + self._ttl

    def succeeded(self, key: tuple[str, str]) -> None:
        self._until.pop(key, None)

    def clear(self) -> None:
        self._until.clear()


@dataclass(frozen=True, slots=True)
class Introspection:
    """What the server said about one token (RFC 7662 §2.2)."""

    active: bool
    exp: int | None  # seconds since the epoch; None when the answer has none


def introspection_request(integration: Integration, access_token: str) -> TokenRequest:
    """§2.1: POST the token with a hint, authenticated as at the token endpoint (§2.1 lets
    the server require any client authentication the token endpoint accepts)."""
    assert integration.introspection_url is not None
    form = {"token": access_token, "token_type_hint": "access_token"}
    headers = {"Accept": "application/json"}
    METHODS[integration.token_endpoint_auth_method](
        integration.client_id, integration.client_secret, form, headers
    )
    return TokenRequest(url=integration.introspection_url, form=form, headers=headers)


def parse_introspection_response(status: int, body: bytes) -> Introspection:
    """§2.2: a JSON object whose `active` is REQUIRED and boolean; `exp` is OPTIONAL,
    an integer timestamp. Anything else is InvalidResponseError (the caller falls back)."""
    if status != 200:
        raise InvalidResponseError(f"introspection endpoint answered HTTP {status}")
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise InvalidResponseError(
            f"introspection answer is not JSON ({len(body)} bytes)"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidResponseError("introspection answer is JSON but not an object")
    active = payload.get("active")
    if not isinstance(active, bool):
        raise InvalidResponseError("introspection answer has no boolean `active`")
    return Introspection(active=active, exp=_exp(payload.get("exp")) if active else None)


def _exp(value: Any) -> int | None:
    # RFC 7662 §2.2 says an integer (NumericDate, RFC 7519 §2); a float is tolerated.
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def with_introspected_lifetime(
    tokens: TokenSet, introspection: Introspection, now: float
) -> TokenSet | None:
    """The token set with the lifetime the server stated, or None when the answer gives
    no usable one (no `exp`, one in milliseconds or the past: the caller keeps the set
    as it was). An inactive token raises: the server says it is dead already (§2.2)."""
    if not introspection.active:
        raise InvalidResponseError(
            "the introspection endpoint says the access token just issued is not active"
        )
    exp = introspection.exp
    if exp is None or exp <= now or exp - now > MAX_EXPIRES_IN_SECONDS:
        return None
    return replace(
        tokens,
        expires_at=float(exp),
        lifetime_seconds=max(1, int(exp - now)),
        lifetime_source=LIFETIME_SOURCE,
    )
