"""Who the account is: the OpenID Connect ID token of a token response, read without a key.

OIDC Core §3.1.3.7 item 6: an ID token received directly from the token endpoint over
TLS may be validated by the TLS server validation instead of its signature. tokenlife
only takes the ID token from its own token request, so it decodes the payload and checks
the claims that say *for whom* it was issued (items 2, 3 and 9): `iss` (when the
integration knows its issuer), `aud` and `exp`. The token itself is never stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tokenlife.core.integration import Integration
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import InvalidIdTokenError

# OIDC Core §2: `sub` "MUST NOT exceed 255 ASCII characters in length".
MAX_SUBJECT_LENGTH = 255
# Far larger than any real ID token; a bigger one is garbage, not worth decoding.
MAX_ID_TOKEN_LENGTH = 64 * 1024
# The token endpoint has just issued it; this only absorbs clock skew between hosts.
EXPIRY_LEEWAY_SECONDS = 300


@dataclass(frozen=True, slots=True)
class IdTokenClaims:
    """The claims tokenlife relies on: `sub` with `iss` identify the account (§5.7)."""

    subject: str
    issuer: str


def parse_id_token(
    id_token: object, *, client_id: str, issuer: str | None, now: float
) -> IdTokenClaims:
    """Decode and check an ID token; raise InvalidIdTokenError saying what is wrong.

    Messages name claims only, never the token or claim values (the token is a credential).
    """
    if not isinstance(id_token, str) or not 0 < len(id_token) <= MAX_ID_TOKEN_LENGTH:
        raise InvalidIdTokenError("id_token is not a string of a plausible length")
    parts = id_token.split(".")
    if len(parts) == 5:
        raise InvalidIdTokenError("id_token is encrypted (JWE), which tokenlife can't read")
    if len(parts) != 3:
        raise InvalidIdTokenError("id_token is not a JWT (header.payload.signature)")
    claims = _payload(parts[1])
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidIdTokenError("id_token has no `sub` claim")
    if len(subject) > MAX_SUBJECT_LENGTH or not subject.isascii() or not subject.isprintable():
        raise InvalidIdTokenError("id_token `sub` is not 1-255 printable ASCII characters")
    token_issuer = claims.get("iss")
    if not isinstance(token_issuer, str) or not token_issuer:
        raise InvalidIdTokenError("id_token has no `iss` claim")
    # §3.1.3.7 item 2: exactly the issuer the client knows (a trailing slash counts).
    if issuer is not None and token_issuer != issuer:
        raise InvalidIdTokenError("id_token `iss` is not the integration's issuer")
    if client_id not in _audience(claims.get("aud")):
        raise InvalidIdTokenError("id_token `aud` does not contain this client's client_id")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise InvalidIdTokenError("id_token has no numeric `exp` claim")
    if exp + EXPIRY_LEEWAY_SECONDS < now:
        raise InvalidIdTokenError("id_token has expired")
    return IdTokenClaims(subject=subject, issuer=token_issuer)


def account_subject(
    integration: Integration, tokens: TokenSet, now: float, requested_scopes: Iterable[str]
) -> str | None:
    """The account a token set belongs to (its ID token's `sub`), None when unknown.

    OIDC Core §3.1.3.3: when the request carried the `openid` scope, the token response
    MUST hold an ID token. Without one the account can't be told, and a user can cause
    that by deleting `openid` from the authorization URL before consenting; so it is an
    InvalidIdTokenError, not an unknown account. `requested_scopes` are the scopes
    tokenlife asked for (the pending authorization's), not what the provider granted.
    """
    if tokens.id_token is None:
        if "openid" in requested_scopes:
            raise InvalidIdTokenError(
                "the token response has no id_token although the openid scope was "
                "requested (OIDC Core §3.1.3.3); remove openid from the integration's "
                "scopes if the provider is not an OpenID provider"
            )
        return None
    claims = parse_id_token(
        tokens.id_token, client_id=integration.client_id, issuer=integration.issuer, now=now
    )
    return claims.subject


def _payload(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidIdTokenError("id_token payload is not base64url-encoded JSON") from None
    if not isinstance(claims, dict):
        raise InvalidIdTokenError("id_token payload is not a JSON object")
    return claims


def _audience(value: object) -> tuple[str, ...]:
    # §2: `aud` is one string, or an array of strings.
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return tuple(value)
    raise InvalidIdTokenError("id_token `aud` is neither a string nor a list of strings")
