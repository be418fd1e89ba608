"""What a `TOKENLIFE_REDIS_URL` names: one Redis, a Redis Cluster, or a master found through
Sentinel. Pure: the adapter (adapters/redis_client.py) turns it into a client.

    redis[s]+cluster://[user:password@]host:port[,host:port...][/0][?options]
    redis[s]+sentinel://[user:password@]host:port[,host:port...]/service[/db][?options]

The hosts are the cluster's startup nodes or the Sentinels. The user and password are the
Redis servers' (every cluster node, the Sentinel's master); a Sentinel with a password of
its own takes `?sentinel_password=`. Other options are redis-py's URL options (`from_url`),
applied to every node. No error here quotes any part of the URL: a password with an
unencoded ',' or ':' would otherwise turn up in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import parse_qsl, urlencode, urlsplit

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
# A node without a port: Redis's and Sentinel's default ports.
_DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}


class Topology(Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True)
class RedisTarget:
    """`node_url` is a plain redis:// (rediss://) URL of the first host with the user,
    password, database and options: what redis-py's `parse_url` reads a node's connection
    options from. The other fields are what a plain URL can't say."""

    topology: Topology
    node_url: str = field(repr=False)
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    sentinel_password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """The target `url` names; ValueError with a message that quotes none of it."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES or not separator:
        return RedisTarget(Topology.STANDALONE, node_url=url)
    topology = Topology.CLUSTER if scheme in CLUSTER_SCHEMES else Topology.SENTINEL
    authority, path, query = _sections(rest)
    userinfo, at, host_list = authority.rpartition("@")
    hosts = tuple(_host(entry, _DEFAULT_PORT[topology.value]) for entry in host_list.split(","))
    options = parse_qsl(query, keep_blank_values=True)
    sentinel_password = [value for name, value in options if name == "sentinel_password"]
    options = [(name, value) for name, value in options if name != "sentinel_password"]
    if topology is Topology.CLUSTER:
        service, db = "", _cluster_db(path, options, sentinel_password)
    else:
        service, db = _service_and_db(path)
    base = "rediss" if scheme.startswith("rediss") else "redis"
    first_host, first_port = hosts[0]
    host = f"[{first_host}]" if ":" in first_host else first_host
    node_url = f"{base}://{userinfo}{at}{host}:{first_port}/{db}"
    if options:
        node_url += "?" + urlencode(options)
    return RedisTarget(topology, node_url, hosts, service,
                       sentinel_password[-1] if sentinel_password else None)  # fmt: skip


def _sections(rest: str) -> tuple[str, str, str]:
    """(authority, path, query) of what follows '://'; the fragment is dropped."""
    rest = rest.partition("#")[0]
    before_query, _, query = rest.partition("?")
    # The userinfo ends at the last '@' before the query: a '/' after it starts the path.
    userinfo, at, hosts_and_path = before_query.rpartition("@")
    host_list, slash, path = hosts_and_path.partition("/")
    if "/" in userinfo:
        raise ValueError(
            "the user name or password holds a '/': percent-encode '/', '?', '#', '@', ':' "
            "and ',' in them (e.g. '/' as %2F)"
        )
    return f"{userinfo}{at}{host_list}", f"{slash}{path}", query


def _host(entry: str, default_port: int) -> tuple[str, int]:
    try:
        parts = urlsplit(f"//{entry}")
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or not parts.hostname or parts.username is not None or port == 0:
        raise ValueError(
            "the hosts must be a comma-separated list of host:port (a port from 1 to 65535; "
            "an IPv6 address in brackets)"
        )
    return parts.hostname, port or default_port


def _cluster_db(path: str, options: list[tuple[str, str]], sentinel_password: list[str]) -> int:
    if path not in ("", "/", "/0") or any(name == "db" for name, _ in options):
        raise ValueError("a Redis Cluster has database 0 only: leave out the path (or use /0)")
    if sentinel_password:
        raise ValueError("sentinel_password is an option of redis+sentinel:// URLs only")
    return 0


def _service_and_db(path: str) -> tuple[str, int]:
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ValueError("name the master after the hosts: /SERVICE or /SERVICE/DB")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError("the database after the service name must be a number")
    return service, int(db or 0)
