"""The Redis and broker URLs of the settings: checked when the settings are read, and shown
without their password (doctor output, errors). Pure.

A password may hold any character, but in a URL '/', '?', '#' and '@' end the userinfo
early unless percent-encoded (RFC 3986 §3.2.1, https://www.rfc-editor.org/rfc/rfc3986#section-3.2.1).
Python's own errors about such a URL quote its "port", which is then part of the
password, so neither function here ever lets one out."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

from tokenlife.core.redis_topology import CLUSTER_SCHEMES, SENTINEL_SCHEMES, parse_redis_url

# What redis-py's from_url accepts, and ours for a Redis Cluster or Sentinel (redis_topology).
REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
# Celery's Redis transport (kombu) talks to one Redis server; it has no Cluster client, and
# these are our schemes, not kombu's (https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.redis.html).
BROKER_REFUSED = (
    "the broker can't be a Redis Cluster or a redis+sentinel:// URL, which only tokenlife "
    "reads (Celery's Redis transport talks to a single Redis): set TOKENLIFE_BROKER_URL to "
    "a plain Redis (redis://, rediss://, or Celery's own sentinel:// list) or to RabbitMQ "
    "(amqp://)"
)
ENCODE_HINT = (
    "percent-encode '/', '?', '#', '@' and ':' in the user name and password (e.g. '/' as %2F)"
)


def check_url(url: str, schemes: tuple[str, ...] | None = None) -> str:
    """`url` when it parses; else ValueError with a message that doesn't quote it. Without
    `schemes`, a `;`-separated list is allowed (Celery's broker failover and Sentinel
    lists, https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url)."""
    for part in [url] if schemes else url.split(";"):
        scheme = part.partition("://")[0].lower()
        if scheme in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
            if not schemes:
                raise ValueError(BROKER_REFUSED)
            if scheme in schemes:
                parse_redis_url(part)  # raises with what is wrong, quoting none of it
                continue
        parts = _split(part)
        if parts is None or not parts.scheme:
            raise ValueError(
                "not a valid URL (a scheme, then //, an optional user:password and @, the "
                f"host, an optional port from 0 to 65535, a path); {ENCODE_HINT}"
            )
        if schemes and parts.scheme.lower() not in schemes:
            raise ValueError(f"the scheme must be one of {', '.join(schemes)}")
    return url


def redact_url(url: str) -> str:
    """The URL without its password (it may be printed, logged, pasted into a ticket).
    Never raises: what doesn't parse loses everything up to its last '@'."""
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    parts = _split(url)
    if parts is None:
        # A cluster or Sentinel host list lands here too (its "port" holds a comma).
        scheme, sep, rest = url.partition("://")
        before_query, mark, query = rest.partition("?")
        query = _SECRET_QUERY.sub(r"\1***", f"{mark}{query}")
        if "@" not in before_query:
            return f"{scheme}{sep}{before_query}{query}"
        return f"{scheme}{sep}***@{before_query.rpartition('@')[2]}{query}" if sep else "***"
    if parts.password is None:
        return _SECRET_QUERY.sub(r"\1***", url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return _SECRET_QUERY.sub(
        r"\1***", urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    )


# redis-py also takes a password as a query parameter (`?password=`, as its docs show for
# unix:// URLs), and TLS a key password (`ssl_password`).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|ssl_password|sentinel_password)=)[^&#]*")


def _split(url: str) -> SplitResult | None:
    """The parts, or None when they can't be trusted: a bad port or IPv6 literal, or an
    '@' after the host (a password with an unencoded '/' split off the rest)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return None
    # An '@' before the query that urlsplit didn't take as the userinfo's end: an
    # unencoded '/' in the password cut the authority short. (An '@' in the query is data.)
    before_query = url.partition("://")[2].split("?", 1)[0].split("#", 1)[0]
    if "@" in before_query and "@" not in parts.netloc:
        return None
    return parts
