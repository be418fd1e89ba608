"""Proof Key for Code Exchange (RFC 7636)."""

from __future__ import annotations

import base64
import hashlib

METHOD = "S256"


def verifier_from_bytes(random_bytes: bytes) -> str:
    """§4.1: 43 to 128 characters of [A-Z a-z 0-9 -._~]; base64url of 32..96 bytes fits."""
    if not 32 <= len(random_bytes) <= 96:
        raise ValueError("PKCE verifier needs 32 to 96 random bytes")
    return base64.urlsafe_b64encode(random_bytes).rstrip(b"=").decode("ascii")


def challenge(verifier: str) -> str:
    """§4.2: code_challenge = BASE64URL(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
