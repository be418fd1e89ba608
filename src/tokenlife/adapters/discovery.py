"""OpenID Connect Discovery 1.0 (and RFC 8414) for custom integrations with an `issuer`,
and the Redis cache of the last good document of each issuer."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_endpoint import read_limited
from tokenlife.core.introspection import insecure_introspection_url
from tokenlife.errors import ConfigurationError

log = logging.getLogger(__name__)
_MAX_BYTES = 256 * 1024


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


def requires_iss(document: Mapping[str, Any]) -> bool:
    """RFC 9207 §3: the server always sends `iss` in authorization responses."""
    return document.get("authorization_response_iss_parameter_supported") is True


def prompt_values_from(document: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The `prompt` values the server supports, where it says (the metadata of "Initiating
    User Registration via OpenID Connect 1.0" §4; OIDC Discovery itself has none)."""
    values = document.get("prompt_values_supported")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return None
    return tuple(values)


def endpoints_from(issuer: str, document: Mapping[str, Any]) -> tuple[str, str]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    endpoints = (document.get("authorization_endpoint"), document.get("token_endpoint"))
    if not all(isinstance(e, str) and e.startswith(("http://", "https://")) for e in endpoints):
        raise ConfigurationError(
            f"discovery {url}: authorization_endpoint and token_endpoint are required"
        )
    return str(endpoints[0]), str(endpoints[1])


def revocation_endpoint_from(document: Mapping[str, Any]) -> str | None:
    """The RFC 7009 endpoint the provider advertises (RFC 8414 §2 `revocation_endpoint`)."""
    endpoint = document.get("revocation_endpoint")
    if isinstance(endpoint, str) and endpoint.startswith(("http://", "https://")):
        return endpoint
    return None


def introspection_endpoint_from(
    document: Mapping[str, Any], issuer: str, token_url: str
) -> str | None:
    """The RFC 7662 endpoint the provider advertises (RFC 8414 §2 `introspection_endpoint`),
    if it is safe to send the access token and the client's credentials to: https (RFC 7662
    §4) and on the host of the issuer or the token endpoint. Otherwise None, and a warning
    says why (a document is not trusted to send the credentials elsewhere)."""
    endpoint = document.get("introspection_endpoint")
    if not isinstance(endpoint, str):
        return None
    why = insecure_introspection_url(endpoint)
    host = urlsplit(endpoint).hostname
    if why is None and host not in {urlsplit(issuer).hostname, urlsplit(token_url).hostname}:
        why = "is on another host than the issuer and the token endpoint"
    if why is not None:
        log.warning("discovery %s: introspection_endpoint %s ignored: it %s", issuer, endpoint, why)
        return None
    return endpoint


@dataclass(frozen=True, slots=True)
class CachedDocument:
    document: dict[str, Any]
    fetched_at: float


class DiscoveryCache:
    """The last good discovery document of each issuer, in Redis.

    A document is public metadata, so it is stored as plain JSON. Reads and writes are
    best effort: the cache only helps when the issuer is down, and Redis being down too
    must not turn a cache miss into a start-up failure.
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def put(self, issuer: str, document: Mapping[str, Any], now: float) -> None:
        try:
            await self._redis.hset(
                self._keys.discovery(issuer),
                mapping={"document": json.dumps(document), "fetched_at": repr(now)},
            )
        except RedisError as exc:
            log.warning("discovery cache: could not store %s: %s", issuer, type(exc).__name__)

    async def get(self, issuer: str) -> CachedDocument | None:
        try:
            stored = await self._redis.hgetall(self._keys.discovery(issuer))
        except RedisError as exc:
            log.warning("discovery cache: could not read %s: %s", issuer, type(exc).__name__)
            return None
        try:
            document = json.loads(stored["document"])
            fetched_at = float(stored["fetched_at"])
        except (KeyError, ValueError):
            return None
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            return None
        return CachedDocument(document, fetched_at)
