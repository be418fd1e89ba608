"""Bearer API keys from TOKENLIFE_API_KEYS: `KEY` for every integration, or
`KEY:integration-a|integration-b` for some. Compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class ApiKey:
    digest: bytes
    integrations: frozenset[str] | None  # None: all

    def allows(self, integration: str) -> bool:
        return self.integrations is None or integration in self.integrations


# The key a request to /api/ authenticated with (app.auth_middleware sets it).
API_KEY = web.RequestKey("api_key", ApiKey)


def parse_api_keys(values: Iterable[str]) -> list[ApiKey]:
    keys: list[ApiKey] = []
    for value in values:
        secret, scoped, scope = value.partition(":")
        if len(secret) < 16:
            raise ValueError("an API key must be at least 16 characters")
        names = frozenset(n for n in scope.split("|") if n) if scoped else None
        if names is not None and not names:
            # "KEY:" with nothing after it must not quietly mean "every integration".
            raise ValueError("an API key's integration list after ':' is empty")
        digest = hashlib.sha256(secret.encode()).digest()
        if any(k.digest == digest for k in keys):
            # Which scope would win? The API takes the last match, the dashboard's session
            # the first: one key, one entry. (The message never names the key.)
            raise ValueError(f"API key #{len(keys) + 1} is listed twice; list each key once")
        keys.append(ApiKey(digest, names))
    return keys


def authenticate(header: str | None, keys: Iterable[ApiKey]) -> ApiKey | None:
    """The key a `Bearer` header presents, or None. Every key is compared, whatever
    matches first, so the time taken says nothing about which key was close."""
    if not header or not header.startswith("Bearer "):
        return None
    # surrogateescape: undecodable bytes in the header are a wrong key (401), not a 500.
    raw = header.removeprefix("Bearer ").strip().encode("utf-8", "surrogateescape")
    presented = hashlib.sha256(raw).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(presented, key.digest):
            found = key
    return found
