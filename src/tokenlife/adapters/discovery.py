"""OpenID Connect Discovery 1.0 (and RFC 8414) for custom integrations with an `issuer`,
and the Redis cache of the last good document of each issuer: until the issuer's caching
headers say it is stale, a start uses it without asking the issuer (docs/library.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import MultiMapping
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_endpoint import read_limited
from tokenlife.core.introspection import insecure_introspection_url
from tokenlife.errors import ConfigurationError

log = logging.getLogger(__name__)
_MAX_BYTES = 256 * 1024
# However long an issuer says its document stays fresh, it is asked again after a day: a
# moved endpoint then reaches every process within a day.
MAX_FRESH_SECONDS = 86400.0
# A cached document another process fetched "later" than this clock by more than this is
# never fresh: that process's clock is wrong, or whoever wrote the key is not tokenlife.
CLOCK_SKEW_SECONDS = 60.0
# RFC 9111 §4.2.2: the usual heuristic, a tenth of the time since Last-Modified.
_HEURISTIC_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Discovered:
    """A document just fetched, and until when its issuer lets it be reused (Unix time)."""

    document: dict[str, Any]
    fresh_until: float


async def fetch_discovery_document(
    session: aiohttp.ClientSession, issuer: str, timeout: float
) -> dict[str, Any]:
    """The issuer's OpenID Provider Metadata, its `issuer` checked."""
    return (await fetch_discovery(session, issuer, timeout, 0.0)).document


async def fetch_discovery(
    session: aiohttp.ClientSession, issuer: str, timeout: float, now: float
) -> Discovered:
    """The document, and how long the issuer's caching headers say it is fresh from `now`."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                raise ConfigurationError(f"discovery {url} answered HTTP {response.status}")
            body = await read_limited(response, _MAX_BYTES)
            if body is None:
                raise ConfigurationError(f"discovery {url}: document over {_MAX_BYTES} bytes")
            fresh_for = freshness_seconds(response.headers)
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
    return Discovered(document, now + fresh_for)


def freshness_seconds(headers: MultiMapping[str]) -> float:
    """How long a response may be reused without asking again, as a private cache reads
    RFC 9111: `no-store` or `no-cache`: not at all; else `max-age` (§5.2.2.1), else
    Expires minus Date (§4.2.1), else a tenth of the time since Last-Modified (§4.2.2),
    else not at all; less the Age it already had (§4.2.3); at most MAX_FRESH_SECONDS."""
    directives = {}
    # RFC 9110 §5.3: Cache-Control sent on several lines is one comma-separated list.
    for part in ",".join(headers.getall("Cache-Control", [])).split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    if "max-age" in directives:
        lifetime = _number(directives["max-age"])  # an invalid one: stale (§4.2.1)
    elif "Expires" in headers:
        lifetime = _between(headers.get("Date"), headers["Expires"])  # invalid: stale (§5.3)
    elif "Last-Modified" in headers:
        lifetime = _HEURISTIC_FRACTION * _between(headers["Last-Modified"], headers.get("Date"))
    else:
        lifetime = 0.0
    age = _number(headers.get("Age", "0"))
    return min(MAX_FRESH_SECONDS, max(0.0, lifetime - age))


def _number(value: str) -> float:
    """A delta-seconds value (RFC 9111 §1.2.2); anything else counts as 0."""
    return float(value) if value.isdigit() else 0.0


def _between(start: str | None, end: str | None) -> float:
    """Seconds from one HTTP date to another; 0 when either is missing or invalid."""
    try:
        if start is None or end is None:
            return 0.0
        return (parsedate_to_datetime(end) - parsedate_to_datetime(start)).total_seconds()
    except (TypeError, ValueError):
        return 0.0


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
    # Until when the issuer's caching headers let it be used without asking again; a
    # document cached before tokenlife read them is stale (fetched_at).
    fresh_until: float = 0.0

    def fresh(self, now: float) -> bool:
        """Usable without asking the issuer: within its freshness, and not fetched in this
        clock's future (a copy dated ahead could otherwise stay fresh for ever)."""
        return self.fetched_at <= now + CLOCK_SKEW_SECONDS and now < self.fresh_until


class DiscoveryCache:
    """The last good discovery document of each issuer, in Redis.

    A document is public metadata, so it is stored as plain JSON. The key has no TTL:
    freshness is a field, and a stale document is still what an integration starts from
    while its issuer is down. Reads and writes are best effort: Redis being down too must
    not turn a cache miss into a start-up failure.
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def put(
        self, issuer: str, document: Mapping[str, Any], now: float, fresh_until: float = 0.0
    ) -> None:
        try:
            await self._redis.hset(
                self._keys.discovery(issuer),
                mapping={"document": json.dumps(document), "fetched_at": repr(now),
                         "fresh_until": repr(fresh_until)},
            )  # fmt: skip
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
            fresh_until = float(stored.get("fresh_until", 0.0))
        except (KeyError, ValueError):
            return None
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            return None
        # Whatever the key says, a copy is fresh for at most MAX_FRESH_SECONDS after it was
        # fetched: its token_endpoint receives the client secret and every refresh token,
        # and anyone who can write Redis (not decrypt tokens) could otherwise pin it.
        fresh_until = min(fresh_until, fetched_at + MAX_FRESH_SECONDS)
        return CachedDocument(document, fetched_at, fresh_until)
