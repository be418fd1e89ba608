"""The records a demo provider keeps (clients, consents, refresh-token families, scripted
answers) and the protocol checks that read them: client authentication, codes, PKCE."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]


@dataclass
class Grant:
    """What the user consented to; a code points at one."""

    client_id: str
    user: str
    redirect_uri: str
    scopes: tuple[str, ...]
    params: dict[str, str]
    issue_refresh_token: bool
    code_challenge: str | None
    used: bool = False


@dataclass
class Reply:
    """A scripted answer from the token endpoint instead of the normal one."""

    status: int = 200
    body: bytes | None = None  # None: the normal token response, adjusted below
    content_type: str = "application/json"
    delay: float = 0.0  # the provider is slow; the client's timeout should fire
    headers: dict[str, str] = field(default_factory=dict)
    lifetime: int | None = None  # override expires_in
    expires_in: Any = None  # exact value to send (e.g. "3600" or -5); "omit" drops it
    refresh_token: bool | None = None  # force (True) or withhold (False)
    jwt_exp: int | None = None  # access token is a JWT with this `exp`, and no expires_in


@dataclass
class Family:
    """All refresh tokens descended from one authorization (RFC 6819 §5.2.2.3)."""

    grant: Grant
    live: str | None = None  # the one refresh token that works now
    revoked: bool = False
    refreshes: int = 0
    reuse_detected: int = 0
    previous: str | None = None  # the one `live` replaced, and when
    rotated_at: float = 0.0


def client_credentials(request: web.Request, form: dict[str, Any]) -> tuple[str | None, str | None]:
    """client_secret_basic (RFC 6749 §2.3.1, form-encoded then Base64) or the body."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return unquote(user), unquote(password)
    return form.get("client_id"), form.get("client_secret")


def check_code(grant: Grant | None, client: Client, form: dict[str, Any]) -> str | None:
    """Why the code can't be redeemed (RFC 6749 §4.1.3, RFC 7636 §4.6), or None."""
    if grant is None or grant.used:
        return "The authorization code is invalid or was already used."
    if grant.client_id != client.client_id:
        return "The code was issued to another client."
    if form.get("redirect_uri") != grant.redirect_uri:
        return "redirect_uri does not match the authorization request."
    if grant.code_challenge is not None:
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if digest.rstrip(b"=").decode() != grant.code_challenge:
            return "PKCE verification failed."
    return None


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig{secrets.token_hex(8)}"
