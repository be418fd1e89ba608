"""`tokenlife doctor`: what the facts gathered about a deployment say, each problem with
its fix. Pure: the service (services/doctor.py) reads Redis, the broker and the workers;
these functions only judge what it read.

A check is `ok`, `warning` (works, but an operator should act), `error` (something is
broken or will lose tokens) or `unknown` (this deployment does not let us look; the
message says how to check by hand). Only errors fail the run, and warnings too with
`--strict`; an unknown never does (docs/doctor.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

# Re-exported: services/doctor.py shows the URLs it checked without their password.
from tokenlife.core.service_urls import redact_url as redact_url


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Check:
    area: str  # redis, broker, keys, integrations, beat, worker, settings
    name: str  # a stable code within the area, for scripts reading --json
    status: Status
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


def exit_code(checks: Sequence[Check], *, strict: bool) -> int:
    failing = {Status.ERROR, Status.WARNING} if strict else {Status.ERROR}
    return 1 if any(c.status in failing for c in checks) else 0


# The newest commands tokenlife sends: XAUTOCLAIM (alert delivery reclaiming a crashed
# consumer's events, https://redis.io/docs/latest/commands/xautoclaim/) and GETDEL
# (connect sessions, https://redis.io/docs/latest/commands/getdel/), both "available
# since 6.2.0". The Lua scripts read TIME before writing, which needs script effects
# replication: the default since Redis 5.
MINIMUM_REDIS_VERSION = (6, 2, 0)
ErrorKind = Literal["refused", "timeout", "auth", "other"]


@dataclass(frozen=True, slots=True)
class RedisFacts:
    url: str  # redacted
    error: str | None = None  # why it could not be read; None when it answered
    error_kind: ErrorKind | None = None
    info: dict[str, str] | None = None  # INFO, every default section, as strings
    rdb_save: str | None = None  # CONFIG GET save; None when CONFIG was refused
    config_refused: str | None = None  # the server's answer to CONFIG GET, if it refused
    # CONFIG GET hash-max-listpack-value (hash-max-ziplist-value before Redis 7); None
    # when CONFIG was refused.
    hash_value_limit: int | None = None


def redis_checks(facts: RedisFacts) -> list[Check]:
    if facts.error is not None or facts.info is None:
        return [_redis_unreachable(facts)]
    info = facts.info
    version = info.get("redis_version", "?")
    found = [Check("redis", "reachable", Status.OK, f"{facts.url} answers (Redis {version})")]
    found.append(_version(version))
    if info.get("redis_mode") == "cluster":
        found.append(Check(
            "redis", "mode", Status.ERROR,
            "this is Redis Cluster: tokenlife's scripts touch several keys in one call, "
            "which a cluster refuses (CROSSSLOT)",
            "Use a standalone Redis (with replicas and Sentinel for failover).",
        ))  # fmt: skip
    if info.get("role", "master") != "master":
        found.append(Check(
            "redis", "role", Status.ERROR,
            "this server is a replica: every write fails with READONLY",
            "Point TOKENLIFE_REDIS_URL at the primary.",
        ))  # fmt: skip
    found.append(_persistence(facts))
    found.append(_eviction(info.get("maxmemory_policy")))
    if facts.hash_value_limit is not None:
        found.append(_hash_encoding(facts.hash_value_limit))
    return found


def _redis_unreachable(facts: RedisFacts) -> Check:
    fixes = {
        "auth": "Put the right password (and user, for an ACL user) in TOKENLIFE_REDIS_URL: "
        "redis://USER:PASSWORD@HOST:6379/0.",
        "timeout": "Something accepts connections there but does not answer like Redis: "
        "check the host and port, and that the scheme matches the server (rediss:// for "
        "TLS, redis:// without).",
    }
    fix = fixes.get(
        facts.error_kind or "other",
        "Start Redis, or correct TOKENLIFE_REDIS_URL (host, port, database; rediss:// for "
        "TLS), and check that this machine can reach it.",
    )
    return Check("redis", "reachable", Status.ERROR, f"{facts.url}: {facts.error}", fix)


def parse_version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split(".")[:3])
    except ValueError:
        return None


def _version(text: str) -> Check:
    needed = ".".join(map(str, MINIMUM_REDIS_VERSION))
    version = parse_version(text)
    if version is None:
        return Check("redis", "version", Status.UNKNOWN,
                     f"the server reports version {text!r}; tokenlife needs Redis {needed}+",
                     f"Check that the server is Redis {needed} or newer.")  # fmt: skip
    if version < MINIMUM_REDIS_VERSION:
        return Check("redis", "version", Status.ERROR,
                     f"Redis {text} is too old: tokenlife uses XAUTOCLAIM and GETDEL "
                     f"(Redis {needed}+)", f"Upgrade Redis to {needed} or newer.")  # fmt: skip
    return Check("redis", "version", Status.OK, f"Redis {text} (tokenlife needs {needed}+)")


def _persistence(facts: RedisFacts) -> Check:
    # https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/
    assert facts.info is not None
    aof = facts.info.get("aof_enabled") == "1"
    lose = "a restart loses every stored token and users must reconnect"
    fix_aof = "Turn AOF on: `appendonly yes` with `appendfsync everysec` (docs/doctor.md)."
    if aof:
        return Check("redis", "persistence", Status.OK, "AOF is on")
    if facts.rdb_save is None:
        return Check(
            "redis", "persistence", Status.UNKNOWN,
            "AOF is off, and whether RDB snapshots are on can't be read: the server "
            f"refused CONFIG GET save ({facts.config_refused or 'no answer'}), as managed "
            "Redis services do",
            "Check in your provider's console that persistence (AOF, or at least "
            f"snapshots) is on; without it {lose}.",
        )  # fmt: skip
    if not facts.rdb_save.strip():
        return Check("redis", "persistence", Status.ERROR,
                     f"persistence is off (no AOF, no RDB snapshots): {lose}", fix_aof)  # fmt: skip
    return Check(
        "redis", "persistence", Status.WARNING,
        f"only RDB snapshots (save {facts.rdb_save}): a crash loses the writes since the "
        "last snapshot, among them refresh tokens a provider just rotated",
        fix_aof,
    )  # fmt: skip


def _eviction(policy: str | None) -> Check:
    # https://redis.io/docs/latest/develop/reference/eviction/
    if policy is None:
        return Check("redis", "eviction", Status.UNKNOWN,
                     "the server does not report maxmemory_policy (INFO memory)",
                     "Check that the eviction policy is noeviction.")  # fmt: skip
    if policy != "noeviction":
        return Check(
            "redis", "eviction", Status.ERROR,
            f"maxmemory-policy is {policy}: when memory runs out Redis deletes keys, "
            "such as stored tokens, locks or pending authorizations",
            "Set `maxmemory-policy noeviction` (a full Redis then refuses writes, which "
            "tokenlife reports and retries, instead of losing tokens).",
        )  # fmt: skip
    return Check("redis", "eviction", Status.OK, "maxmemory-policy is noeviction")


# A connection's longest hash field is its refresh token's ciphertext (about 360 bytes for a
# Google-sized token set, bench/scale.py): at this limit or above, Redis keeps the hash in
# its compact encoding. Measured at 100,000 connections: 3,220 bytes each at the default
# 64, 2,044 at 1024 (docs/performance.md).
COMPACT_HASH_VALUE_LIMIT = 1024


def _hash_encoding(limit: int) -> Check:
    # https://redis.io/docs/latest/operate/oss_and_stack/management/optimization/memory-optimization/
    if limit < COMPACT_HASH_VALUE_LIMIT:
        return Check(
            "redis", "memory", Status.WARNING,
            f"hash-max-listpack-value is {limit}: a connection's encrypted tokens are longer, "
            "so Redis stores each connection's hash in its larger encoding (about 3.2 KB a "
            "connection instead of 2.0 KB, measured by bench/scale.py)",
            f"Set `hash-max-listpack-value {COMPACT_HASH_VALUE_LIMIT}` (redis.conf, or "
            f"CONFIG SET and CONFIG REWRITE); hashes written after that are compact.",
        )  # fmt: skip
    stored = f"hash-max-listpack-value is {limit}: connections are stored compactly"
    return Check("redis", "memory", Status.OK, stored)


@dataclass(frozen=True, slots=True)
class BrokerFacts:
    url: str  # redacted
    error: str | None = None


def broker_checks(facts: BrokerFacts) -> list[Check]:
    if facts.error is None:
        return [Check("broker", "reachable", Status.OK, f"{facts.url} accepts connections")]
    return [Check(
        "broker", "reachable", Status.ERROR, f"{facts.url}: {facts.error}",
        "Start the broker, or correct TOKENLIFE_BROKER_URL (it defaults to "
        "TOKENLIFE_REDIS_URL); workers, beat and the API must all use the same one.",
    )]  # fmt: skip
