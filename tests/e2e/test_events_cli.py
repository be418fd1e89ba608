"""`tokenlife events tail` as a subprocess against the real Redis.

Each test writes to a stream of its own (a key prefix of its own), so what the tail prints
is exactly what the test published.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support import stream_events, wait_until, worker_environment
from tokenlife.adapters.event_consumer import order, split_id
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.events import summary_line
from tokenlife.settings import Settings

MISSING_FIX = "Send access_type=offline in the authorization request."
SAMPLES: list[tuple[str, str, str | None, dict[str, Any]]] = [
    (
        "connection.authorized",
        "google",
        "user-1",
        {"provider": "google", "verdict": "refreshable", "status": "active"},
    ),
    (
        "alert.refresh_token_missing",
        "google-as-custom",
        "user-2",
        {
            "provider": "custom",
            "status": "degraded",
            "message": "Refresh token is not present and access token lifetime is too short.",
            "diagnosis": [
                {"cause": "no access_type", "fix": MISSING_FIX, "evidence": "-", "source": None},
                {"cause": "other", "fix": "Something else.", "evidence": "-", "source": None},
            ],
        },
    ),
    (
        "exchange.failed",
        "microsoft",
        "user-3",
        {"error": "invalid_grant", "error_description": "AADSTS70008:\nThe code has expired."},
    ),
    ("token.refreshed", "google", "user-1", {"provider": "google", "refresh_token_rotated": True}),
    (
        "alert.configuration",
        "*",
        None,
        {"severity": "warning", "code": "x", "message": "Odd.", "fix": "Fix it.", "source": None},
    ),
]


@pytest.fixture
async def own(settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """The run's settings with a key prefix of this test's own."""
    prefix = f"{settings.key_prefix}-tail-{uuid.uuid4().hex[:8]}"
    configured = settings.model_copy(update={"key_prefix": prefix})
    yield configured
    keys = Keys(prefix, configured.redis_shards)
    await redis.delete(*[keys.events(shard) for shard in keys.all_shards])


@pytest.fixture
def stream(redis: Redis, own: Settings) -> EventStream:
    return EventStream(redis, Keys(own.key_prefix, own.redis_shards), own.events_max_length)


async def emit_apart(
    stream: EventStream, type_: str, integration: str, connection_id: str | None, **fields: Any
) -> str:
    """Emit an event a few milliseconds after the one before: the events go to their
    connections' shards, and a reader merges the shards by stream id (the time in ms),
    breaking a tie by shard; events apart in time come out in the order they were emitted."""
    await asyncio.sleep(0.003)
    return await stream.emit(type_, integration, connection_id, time.time(), **fields)


async def publish_samples(stream: EventStream) -> list[str]:
    return [
        await emit_apart(stream, type_, integration, connection_id, **fields)
        for type_, integration, connection_id, fields in SAMPLES
    ]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokenlife.cli", "events", "tail", *args]


def tail(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        env=worker_environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def tail_is_waiting(redis: Redis) -> bool:
    """Whether a client is blocked in XREAD: the tail has its starting point and waits."""
    clients = await redis.client_list()
    return any(c["cmd"] == "xread" and "b" in c["flags"] for c in clients)


async def test_json_from_the_beginning_prints_n_entries_in_stream_order(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    ids = await publish_samples(stream)
    assert ids == sorted(ids, key=order)  # the merged order is the order of emission
    assert len({split_id(entry_id)[1] for entry_id in ids}) > 1  # over several shards

    result = tail(own, "--json", "--since", "0", "--count", str(len(ids)))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(ids)
    entries = [json.loads(line) for line in lines]
    assert [e["id"] for e in entries] == ids
    assert [(e["type"], e["data"]) for e in entries] == await stream_events(redis, own.key_prefix)
    assert entries[1]["data"]["diagnosis"][0]["fix"] == MISSING_FIX


async def test_count_stops_after_n_events_and_since_starts_after_an_id(
    own: Settings, stream: EventStream
) -> None:
    ids = await publish_samples(stream)

    first_two = tail(own, "--json", "--since", "0", "--count", "2")
    after_second = tail(own, "--json", "--since", ids[1], "--count", "3")

    assert first_two.returncode == 0, first_two.stderr
    assert after_second.returncode == 0, after_second.stderr  # an id as the tail printed it
    assert [json.loads(line)["id"] for line in first_two.stdout.splitlines()] == ids[:2]
    assert [json.loads(line)["id"] for line in after_second.stdout.splitlines()] == ids[2:]


async def test_human_form_prints_one_line_per_event_with_the_key_facts(
    own: Settings, stream: EventStream
) -> None:
    await publish_samples(stream)

    result = tail(own, "--since", "0", "--count", str(len(SAMPLES)))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(SAMPLES)
    for line, (type_, integration, connection_id, _) in zip(lines, SAMPLES, strict=True):
        assert f" {type_} " in line
        where = integration if connection_id is None else f"{integration}/{connection_id}"
        assert f" {where} " in line or line.endswith(f" {where}")
        assert line[:4].isdigit() and "Z " in line  # starts with the event's time
    authorized, missing, failed, _, configuration = lines
    assert "verdict=refreshable" in authorized and "status=active" in authorized
    assert "status=degraded" in missing
    assert "Refresh token is not present" in missing
    assert f"fix: {MISSING_FIX}" in missing and "Something else" not in missing
    assert "error=invalid_grant" in failed
    assert "AADSTS70008: The code has expired." in failed  # one line, even so
    assert "severity=warning" in configuration and "fix: Fix it." in configuration


async def test_type_keeps_only_events_whose_type_starts_with_a_prefix(
    own: Settings, stream: EventStream
) -> None:
    ids = await publish_samples(stream)

    alerts = tail(own, "--json", "--since", "0", "--type", "alert.", "--count", "2")
    two_kinds = tail(
        own, "--json", "--since", "0", "--type", "exchange.", "--type", "token.", "--count", "2"
    )
    human = tail(own, "--since", "0", "--type", "connection.", "--count", "1")

    assert alerts.returncode == 0, alerts.stderr
    assert [json.loads(line)["id"] for line in alerts.stdout.splitlines()] == [ids[1], ids[4]]
    assert [json.loads(line)["type"] for line in two_kinds.stdout.splitlines()] == [
        "exchange.failed",
        "token.refreshed",
    ]
    assert " connection.authorized " in human.stdout
    assert len(human.stdout.splitlines()) == 1


async def test_by_default_only_new_events_are_printed(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    await publish_samples(stream)
    process = subprocess.Popen(
        command("--json", "--count", "2"),
        env=worker_environment(own),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until(lambda: tail_is_waiting(redis), timeout=30, what="the tail to wait")
        new = [await emit_apart(stream, "token.refreshed", "google", f"late-{n}") for n in range(2)]
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 0, stderr
    assert [json.loads(line)["id"] for line in stdout.splitlines()] == new


async def test_ctrl_c_exits_cleanly(own: Settings, redis: Redis) -> None:
    process = subprocess.Popen(
        command(), env=worker_environment(own), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await wait_until(lambda: tail_is_waiting(redis), timeout=30, what="the tail to wait")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 0, stderr
    assert stdout == b"" and stderr == b""


def test_a_bad_since_is_refused_with_a_message(own: Settings) -> None:
    result = tail(own, "--since", "yesterday")
    assert result.returncode == 2  # a usage error (docs/cli.md)
    assert "stream entry id" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("type_", "data", "expected"),
    [
        (
            "token.refreshed",
            {"occurred_at": "2026-01-02T03:04:05Z", "integration": "g", "connection_id": "u"},
            "2026-01-02T03:04:05Z  token.refreshed  g/u",
        ),
        (
            "alert.configuration",
            {"occurred_at": "T", "integration": "*", "connection_id": None, "fix": "Do x."},
            "T  alert.configuration  *  fix: Do x.",
        ),
        (
            "alert.reauthorization_required",
            {
                "occurred_at": "T",
                "integration": "ms",
                "connection_id": "u",
                "error": "invalid_grant",
                "message": "Connect again.",
                "error_description": "not shown when there is a message",
                "diagnosis": [{"fix": "Renew the\nsecret."}],
            },
            "T  alert.reauthorization_required  ms/u  error=invalid_grant  Connect again.  "
            "fix: Renew the secret.",
        ),
        ("x.unknown", {}, "-  x.unknown  -"),
    ],
)
def test_summary_line(type_: str, data: dict[str, Any], expected: str) -> None:
    assert summary_line(type_, data) == expected
