"""`tokenlife alerts dead-letters list|replay` against the real Redis and a local receiver
that refuses, then accepts: what a target refused is listed, replayed through the delivery's
retries, kept (under a new id) while it still fails, and gone once accepted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result
from redis.asyncio import Redis

from tests.support import Fakes, worker_environment
from tokenlife.adapters.keys import Keys
from tokenlife.cli import main
from tokenlife.core import events
from tokenlife.core.notifications import verify
from tokenlife.runtime import Runtime, load_config
from tokenlife.services import dead_letters
from tokenlife.settings import Settings

SECRET = "whsec-dead"
DOCS_URL = "https://docs.example.com/troubleshooting"


@dataclass
class Rig:
    settings: Settings
    runtime: Runtime
    fakes: Fakes
    path: str

    def environment(self) -> dict[str, str]:
        env = worker_environment(self.settings)
        env["TOKENLIFE_ALERT_RETRIES"] = "1"
        env["TOKENLIFE_DOCS_URL"] = DOCS_URL
        return env

    async def cli(self, *args: str) -> Result:
        """The command in this process (on a thread: it runs its own event loop)."""
        env = {k: v for k, v in self.environment().items() if k.startswith("TOKENLIFE_")}
        return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)

    def hook(self, status: int | None = 200) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.fakes.receiver.at(self.path, status)]


@pytest.fixture
async def rig(settings: Settings, fakes: Fakes, redis: Redis) -> AsyncIterator[Rig]:
    """A key prefix of its own, one signed webhook target (`webhook-1`), and one alert that
    target refused on every retry: a dead letter."""
    tag = uuid.uuid4().hex[:8]
    path = f"/{tag}/hook"
    own = settings.model_copy(update={
        "key_prefix": f"dead-{tag}",
        "alert_webhook_urls": (fakes.receiver.base_url + path,),
        "alert_webhook_secret": SECRET,
        "alert_retry_base_seconds": 0.01,
        "alert_retries": 1,
    })  # fmt: skip
    runtime = await Runtime.open(await load_config(own))
    rig = Rig(own, runtime, fakes, path)
    await runtime.alert_delivery().run_once(time.time())  # the consumer group, from here on
    fakes.receiver.script(path, 503)
    await runtime.events.emit(events.REFRESH_FAILING, "crm", "user-1", time.time(),
                              provider="custom", error="timeout",
                              failing_since=events.iso8601(time.time() - 7200),
                              failed_attempts=9)  # fmt: skip
    totals = await runtime.alert_delivery().run_once(time.time())
    assert totals["dead_lettered"] == 1
    yield rig
    await runtime.close()
    await redis.delete(*[k async for k in redis.scan_iter(f"{own.key_prefix}:*")])


async def listed(rig: Rig) -> list[dict[str, Any]]:
    result = await rig.cli("alerts", "dead-letters", "list", "--json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


async def test_a_dead_letter_is_listed_kept_while_failing_and_gone_once_accepted(
    rig: Rig, redis: Redis
) -> None:
    [letter] = await listed(rig)
    assert letter["target"] == "webhook-1" and letter["error"] == "target webhook-1: HTTP 503"
    assert letter["payload"]["type"] == "alert.refresh_failing"
    assert letter["payload"]["connection_ids"] == ["user-1"]
    assert abs(letter["dead_lettered_at"] - time.time()) < 60
    notification_id = letter["payload"]["notification_id"]

    # Still refused: replayed with the retries (2 more POSTs), dead-lettered anew.
    refused_before = len(rig.hook(503))
    still = await rig.cli("alerts", "dead-letters", "replay", letter["id"])
    assert still.exit_code == 5, still.output
    assert len(rig.hook(503)) == refused_before + 2
    [again] = await listed(rig)
    assert again["id"] != letter["id"] and again["payload"] == letter["payload"]
    assert f"{letter['id']} webhook-1 failed: target webhook-1: HTTP 503 (now {again['id']})" in (
        still.stdout
    )

    # The receiver is back: delivered once, signed, the same notification id; the text
    # written anew with the absolute help link.
    rig.fakes.receiver.script(rig.path, 200)
    done = await rig.cli("alerts", "dead-letters", "replay", "--all", "--json")
    assert done.exit_code == 0, done.output
    delivered = {"outcome": "delivered", "error": None, "new_id": None}
    assert json.loads(done.stdout) == [{"id": again["id"], "target": "webhook-1", **delivered}]
    [request] = rig.fakes.receiver.at(rig.path)
    assert verify(SECRET.encode(), request.headers["Tokenlife-Signature"], request.body,
                  now=time.time())  # fmt: skip
    assert request.headers["Idempotency-Key"] == notification_id
    body = json.loads(request.body)
    assert body["notification_id"] == notification_id and body["notify_type"] == "failure"
    assert "Failing since: " in body["text"] and ", 2 h ago" in body["text"]
    assert "Attempts: 9" in body["text"]
    assert f"More: {DOCS_URL}#refreshes-keep-failing" in body["text"]
    assert await listed(rig) == []
    assert await redis.xlen(Keys(rig.settings.key_prefix).alerts_dead) == 0


async def test_unknown_ids_send_nothing_and_the_usage_is_checked(rig: Rig) -> None:
    [letter] = await listed(rig)
    posts = len(rig.fakes.receiver.at(rig.path, None))

    unknown = await rig.cli("alerts", "dead-letters", "replay", letter["id"], "1-0")
    neither = await rig.cli("alerts", "dead-letters", "replay")
    both = await rig.cli("alerts", "dead-letters", "replay", letter["id"], "--all")

    assert unknown.exit_code == 3 and "no dead letter 1-0" in unknown.stderr
    assert neither.exit_code == 2 and both.exit_code == 2
    assert len(rig.fakes.receiver.at(rig.path, None)) == posts
    assert [e["id"] for e in await listed(rig)] == [letter["id"]]


async def test_list_as_a_person_reads_it(rig: Rig) -> None:
    """The command as a process: one line per dead letter."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tokenlife.cli", "alerts", "dead-letters", "list"],
        env=rig.environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "webhook-1" in line and "alert alert.refresh_failing crm (1 connections)" in line
    assert line.endswith("error: target webhook-1: HTTP 503")


async def test_an_alert_resolved_since_is_skipped_unless_forced(rig: Rig, redis: Redis) -> None:
    """The receiver is back and the connection recovered: its RESOLVED was delivered, so
    replaying the alert would page for what is over. Skipped and kept; --force sends it."""
    [letter] = await listed(rig)
    rig.fakes.receiver.script(rig.path, 200)
    await rig.runtime.events.emit(events.CONNECTION_RECOVERED, "crm", "user-1", time.time(),
                                  provider="custom", failed_attempts=9)  # fmt: skip
    assert (await rig.runtime.alert_delivery().run_once(time.time()))["sent"] == 1
    [resolved] = rig.hook()
    assert resolved["kind"] == "resolved"
    assert resolved["incident_key"] == letter["payload"]["incident_key"]

    skipped = await rig.cli("alerts", "dead-letters", "replay", "--all", "--json")
    assert skipped.exit_code == 0, skipped.output
    assert [r["outcome"] for r in json.loads(skipped.stdout)] == ["skipped_resolved"]
    assert len(rig.hook()) == 1 and [e["id"] for e in await listed(rig)] == [letter["id"]]

    forced = await rig.cli("alerts", "dead-letters", "replay", letter["id"], "--force")
    assert forced.exit_code == 0, forced.output
    assert [p["kind"] for p in rig.hook()] == ["resolved", "alert"]
    assert await listed(rig) == []


async def test_two_concurrent_replays_send_a_letter_once(rig: Rig, redis: Redis) -> None:
    rig.fakes.receiver.script(rig.path, 200)
    keys = rig.runtime.keys

    async def replay_all() -> list[dead_letters.ReplayResult]:
        letters = await dead_letters.everything(redis, keys)
        delivery = rig.runtime.alert_delivery()
        return await dead_letters.replay(redis, keys, letters, delivery.resend, time.time())

    first, second = await asyncio.gather(replay_all(), replay_all())

    outcomes = sorted(r.outcome.value for r in [*first, *second])
    assert outcomes == ["delivered", "skipped_elsewhere"]
    assert len(rig.hook()) == 1
    assert await redis.xlen(keys.alerts_dead) == 0
