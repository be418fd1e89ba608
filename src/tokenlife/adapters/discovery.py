"""OpenID Connect Discovery 1.0 (and RFC 8414) for custom integrations with an `issuer`."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tokenlife.adapters.token_endpoint import read_limited
from tokenlife.errors import ConfigurationError

_MAX_BYTES = 256 * 1024


async def discover_endpoints(
    session: aiohttp.ClientSession, issuer: str, timeout: float
) -> tuple[str, str]:
    """(authorization_endpoint, token_endpoint) from the issuer's discovery document."""
    return endpoints_from(issuer, await fetch_discovery_document(session, issuer, timeout))


async def fetch_discovery_document(
    session: aiohttp.ClientSession, issuer: str, timeout: float
) -> dict[str, Any]:
    """The issuer's OpenID Provider Metadata, its `issuer` checked."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                raise ConfigurationError(f"discovery {url} answered HTTP {response.status}")
            body = await read_limited(response, _MAX_BYTES)
            if body is None:
                raise ConfigurationError(f"discovery {url}: document over {_MAX_BYTES} bytes")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ConfigurationError(f"discovery {url} failed: {type(exc).__name__}: {exc}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise ConfigurationError(f"discovery {url} did not return JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"discovery {url} did not return a JSON object")
    # OIDC Discovery §4.3: the issuer in the document must be exactly the one asked
    # for; a trailing slash counts.
    if document.get("issuer") != issuer:
        raise ConfigurationError(
            f"discovery {url}: issuer {document.get('issuer')!r} does not match {issuer!r} "
            "exactly (check for a trailing slash)"
        )
    return document


def requires_iss(document: dict[str, Any]) -> bool:
    """RFC 9207 §3: the server always sends `iss` in authorization responses."""
    return document.get("authorization_response_iss_parameter_supported") is True


def endpoints_from(issuer: str, document: dict[str, Any]) -> tuple[str, str]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    endpoints = (document.get("authorization_endpoint"), document.get("token_endpoint"))
    if not all(isinstance(e, str) and e.startswith(("http://", "https://")) for e in endpoints):
        raise ConfigurationError(
            f"discovery {url}: authorization_endpoint and token_endpoint are required"
        )
    return str(endpoints[0]), str(endpoints[1])
