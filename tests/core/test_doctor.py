"""The doctor's judgements: facts in, checks with fixes out; each rule as a table row."""

from __future__ import annotations

from typing import Any

import pytest

from tokenlife.core.doctor import (
    BrokerFacts,
    Check,
    RedisFacts,
    Status,
    broker_checks,
    exit_code,
    redact_url,
    redis_checks,
)
from tokenlife.core.doctor_fleet import (
    KeyFacts,
    KeySample,
    LivenessFacts,
    beat_is_late,
    integration_checks,
    key_checks,
    liveness_checks,
)
from tokenlife.core.preflight import Finding

HEALTHY_INFO = {"redis_version": "7.2.4", "redis_mode": "standalone", "role": "master",
                "aof_enabled": "1", "maxmemory_policy": "noeviction"}  # fmt: skip


def redis(**info: str) -> RedisFacts:
    return RedisFacts("redis://h:6379/0", info={**HEALTHY_INFO, **info}, rdb_save="")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_healthy_redis_passes_every_check() -> None:
    checks = redis_checks(redis())
    assert [c.name for c in checks] == ["reachable", "version", "persistence", "eviction"]
    assert {c.status for c in checks} == {Status.OK}


@pytest.mark.parametrize(
    ("facts", "name", "status", "in_message"),
    [
        (redis(redis_version="6.0.16"), "version", Status.ERROR, "too old"),
        (redis(redis_version="6.2.0"), "version", Status.OK, "6.2.0"),
        (redis(redis_version="7.4.1"), "version", Status.OK, "7.4.1"),
        (redis(redis_version="unstable"), "version", Status.UNKNOWN, "'unstable'"),
        (redis(redis_mode="cluster"), "mode", Status.ERROR, "CROSSSLOT"),
        (redis(role="slave"), "role", Status.ERROR, "READONLY"),
        (redis(aof_enabled="0"), "persistence", Status.ERROR, "persistence is off"),
        (RedisFacts("u", info={**HEALTHY_INFO, "aof_enabled": "0"}, rdb_save="3600 1"),
         "persistence", Status.WARNING, "only RDB snapshots (save 3600 1)"),
        (RedisFacts("u", info={**HEALTHY_INFO, "aof_enabled": "0"},
                    config_refused="ERR unknown command 'config'"),
         "persistence", Status.UNKNOWN, "unknown command 'config'"),
        (RedisFacts("u", info={**HEALTHY_INFO}, config_refused="ERR unknown command"),
         "persistence", Status.OK, "AOF is on"),
        (redis(maxmemory_policy="allkeys-lru"), "eviction", Status.ERROR, "allkeys-lru"),
        (redis(maxmemory_policy="volatile-ttl"), "eviction", Status.ERROR, "locks"),
    ],
)  # fmt: skip
def test_redis_rules(facts: RedisFacts, name: str, status: Status, in_message: str) -> None:
    check = by_name(redis_checks(facts))[name]
    assert check.status is status
    assert in_message in check.message
    assert (check.fix is None) == (status is Status.OK)


def test_a_redis_without_maxmemory_policy_in_info_is_unknown() -> None:
    info = {k: v for k, v in HEALTHY_INFO.items() if k != "maxmemory_policy"}
    check = by_name(redis_checks(RedisFacts("u", info=info)))["eviction"]
    assert check.status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("kind", "in_fix"),
    [("refused", "Start Redis"), ("auth", "PASSWORD"), ("timeout", "rediss://"),
     ("other", "Start Redis")],
)  # fmt: skip
def test_an_unreachable_redis_is_one_error_with_a_fix_for_its_cause(kind: Any, in_fix: str) -> None:
    checks = redis_checks(RedisFacts("redis://h:1/0", error="nope", error_kind=kind))
    assert len(checks) == 1 and checks[0].status is Status.ERROR
    assert checks[0].message == "redis://h:1/0: nope"
    assert checks[0].fix is not None and in_fix in checks[0].fix


def test_the_broker_is_reachable_or_an_error_with_its_fix() -> None:
    assert broker_checks(BrokerFacts("amqp://g:***@h//"))[0].status is Status.OK
    (down,) = broker_checks(BrokerFacts("amqp://g:***@h//", error="refused"))
    assert down.status is Status.ERROR and "TOKENLIFE_BROKER_URL" in (down.fix or "")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:s3cret@h/1", "rediss://user:***@h/1"),
        ("amqp://guest:guest@[::1]:5672//", "amqp://guest:***@[::1]:5672//"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        # Never raises, and what doesn't parse loses its userinfo whole.
        ("redis://:hun/ter2pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://user:12/x@h:6379/0", "redis://***@h:6379/0"),
        ("amqp://u:pw@h:99999//", "amqp://***@h:99999//"),
        ("redis://h:99999/0", "redis://h:99999/0"),
        ("sentinel://:pw@h1:26379;sentinel://:pw@h2:26379",
         "sentinel://:***@h1:26379;sentinel://:***@h2:26379"),
        # a password in the query (redis-py reads ?password=), with or without userinfo
        ("redis://127.0.0.1:6379/15?password=Sekr1t", "redis://127.0.0.1:6379/15?password=***"),
        ("unix:///run/r.sock?db=0&password=Sekr1t", "unix:///run/r.sock?db=0&password=***"),
        ("rediss://:pw@h/0?ssl_password=kp&ssl_cert_reqs=required",
         "rediss://:***@h/0?ssl_password=***&ssl_cert_reqs=required"),
        # an '@' past the host is no userinfo
        ("redis://h:6379/0?client_name=me@x", "redis://h:6379/0?client_name=me@x"),
    ],
)  # fmt: skip
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("facts", "status", "in_message", "in_fix"),
    [
        (KeyFacts(1, KeySample(examined=0)), Status.OK, "no stored connection", None),
        (KeyFacts(1, KeySample(examined=3, current=3)), Status.OK, "all 3 stored", None),
        (KeyFacts(2, KeySample(examined=3, current=1, older=2, complete=False)), Status.OK,
         "2 still use an older key", None),
        (KeyFacts(1, KeySample(examined=4, current=3, undecryptable=1, examples=("g/u1",))),
         Status.ERROR, "1 of all 4 stored connections can't be decrypted", "put the key"),
        (KeyFacts(1, KeySample(examined=1, error="the 5 s bound", complete=False)),
         Status.OK, "stopped early: the 5 s bound", None),
        (KeyFacts(1, None), Status.UNKNOWN, "could not be read", "again"),
    ],
)  # fmt: skip
def test_key_sample_rules(
    facts: KeyFacts, status: Status, in_message: str, in_fix: str | None
) -> None:
    check = key_checks(facts)[-1]
    assert check.status is status
    assert in_message in check.message
    if in_fix is not None:
        assert in_fix in (check.fix or "").lower()


@pytest.mark.parametrize(
    ("facts", "in_fix", "suggests_generating"),
    [
        # Stored data exists: only the old key helps; never suggest a new one.
        (KeyFacts(0, KeySample(examined=5)), "the key they were stored with", False),
        # Redis unreadable: we can't know what is stored, so no "generate" either.
        (KeyFacts(0, None), "the key your stored connections use", False),
        # Nothing stored yet: a fresh key is the right answer.
        (KeyFacts(0, KeySample(examined=0)), "tokenlife keys generate", True),
    ],
)
def test_missing_keys_never_suggest_a_new_key_when_anything_may_be_stored(
    facts: KeyFacts, in_fix: str, suggests_generating: bool
) -> None:
    (check,) = key_checks(facts)
    assert check.status is Status.ERROR
    assert in_fix in (check.fix or "")
    assert ("generate" in (check.fix or "")) is suggests_generating


def test_keys_from_the_development_key_are_checked_and_warned_about() -> None:
    present, sample = key_checks(KeyFacts(1, KeySample(examined=2, current=2),
                                          "/srv/app/.tokenlife/dev.key"))  # fmt: skip
    assert present.status is Status.WARNING
    assert "/srv/app/.tokenlife/dev.key" in present.message
    assert "TOKENLIFE_ENCRYPTION_KEYS" in (present.fix or "")
    assert "generate" not in (present.fix or "")
    assert sample.status is Status.OK


def test_integration_findings_become_checks_with_their_severity() -> None:
    findings = [
        Finding("g", "error", "client_secret_env_unset", "unset", "Set it."),
        Finding("m", "warning", "pkce", "no PKCE", "Turn it on."),
    ]
    checks = integration_checks(findings, file="i.toml")
    assert [(c.status, c.name, c.message, c.fix) for c in checks] == [
        (Status.ERROR, "client_secret_env_unset", "g: unset", "Set it."),
        (Status.WARNING, "pkce", "m: no PKCE", "Turn it on."),
    ]
    assert integration_checks([], file="i.toml")[0].status is Status.OK
    assert integration_checks([], file=None)[0].status is Status.WARNING
    late = integration_checks(None, file="i.toml", error="slow")[0]
    assert late.status is Status.UNKNOWN and "slow" in late.message


@pytest.mark.parametrize(
    ("age", "interval", "late"),
    [(None, 1.0, True), (29.0, 1.0, False), (31.0, 1.0, True), (45.0, 5.0, False),
     (51.0, 5.0, True)],
)  # fmt: skip
def test_beat_is_late_after_ten_intervals_and_never_before_30_s(
    age: float | None, interval: float, late: bool
) -> None:
    assert beat_is_late(age, interval) is late


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("heartbeat_at", "read", "workers", "worker", "beat"),
    [
        (NOW - 2, True, ("w1@h",), Status.OK, Status.OK),
        (None, True, ("w1@h",), Status.OK, Status.ERROR),  # a worker, but no beat
        (NOW - 300, True, ("w1@h",), Status.OK, Status.ERROR),
        (None, True, (), Status.ERROR, Status.UNKNOWN),  # no worker: beat can't be seen
        (NOW - 2, True, (), Status.ERROR, Status.OK),  # a tick just before it went away
        (None, False, None, Status.UNKNOWN, Status.UNKNOWN),  # Redis and broker down
        (NOW + 3, True, ("w1@h",), Status.OK, Status.OK),  # a worker's clock runs ahead
    ],
)  # fmt: skip
def test_liveness_rules(
    heartbeat_at: float | None, read: bool, workers: tuple[str, ...] | None,
    worker: Status, beat: Status,
) -> None:  # fmt: skip
    facts = LivenessFacts(1.0, heartbeat_at, read, workers)
    ping, tick = liveness_checks(facts, NOW)
    assert (ping.status, tick.status) == (worker, beat)
    if beat is Status.ERROR:
        assert "tokenlife beat" in (tick.fix or "")


@pytest.mark.parametrize(
    ("statuses", "strict", "code"),
    [
        ([Status.OK], False, 0),
        ([Status.OK, Status.UNKNOWN], True, 0),
        ([Status.OK, Status.WARNING], False, 0),
        ([Status.OK, Status.WARNING], True, 1),
        ([Status.ERROR], False, 1),
        ([], True, 0),
    ],
)
def test_exit_code(statuses: list[Status], strict: bool, code: int) -> None:
    checks = [Check("a", "b", s, "m") for s in statuses]
    assert exit_code(checks, strict=strict) == code


@pytest.mark.parametrize(
    ("limit", "status"), [(64, Status.WARNING), (1023, Status.WARNING), (1024, Status.OK)]
)
def test_a_hash_value_limit_below_the_ciphertexts_costs_memory(limit: int, status: Status) -> None:
    facts = RedisFacts("u", info=HEALTHY_INFO, rdb_save="", hash_value_limit=limit)
    [memory] = [c for c in redis_checks(facts) if c.name == "memory"]
    assert memory.status is status
    if status is Status.WARNING:
        assert memory.fix is not None and "hash-max-listpack-value 1024" in memory.fix


def test_no_memory_check_when_config_is_refused() -> None:
    facts = RedisFacts("u", info=HEALTHY_INFO, config_refused="ERR unknown command 'CONFIG'")
    assert "memory" not in {c.name for c in redis_checks(facts)}
