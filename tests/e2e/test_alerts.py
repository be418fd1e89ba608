"""Alert delivery against real Redis and local HTTP receivers: signed webhooks and Apprise's
json:// and form://, dedup, storms, retries, dead letters, crashes and resolutions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from redis.asyncio import Redis

from tests.fakes.receiver import AlertReceiver
from tests.support import Fakes, WorkerHandle, connect, wait_until
from tokenlife.adapters.keys import Keys
from tokenlife.core import events
from tokenlife.core.notifications import verify
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.delivery import GROUP
from tokenlife.settings import Settings

SECRET = "whsec-test"
DOCS_URL = "https://docs.example.com/tokenlife/troubleshooting"


@dataclass
class Alerting:
    runtime: Runtime
    receiver: AlertReceiver
    prefix: str
    paths: dict[str, str]

    @property
    def keys(self) -> Keys:
        return self.runtime.keys

    async def emit(self, type_: str, connection_id: str | None, **fields: Any) -> None:
        await self.runtime.events.emit(type_, "crm", connection_id, time.time(),
                                       provider="custom", **fields)  # fmt: skip

    async def deliver(self) -> dict[str, int]:
        return dict(await self.runtime.alert_delivery().run_once(time.time()))


@pytest.fixture
async def alerting(settings: Settings, fakes: Fakes) -> AsyncIterator[Alerting]:
    """A fresh stream and three targets: the signed webhook, Apprise json:// and form://."""
    tag = uuid.uuid4().hex[:8]
    host = fakes.receiver.base_url.removeprefix("http://")
    paths = {"webhook": f"/{tag}/hook", "json": f"/{tag}/json", "form": f"/{tag}/form"}
    configured = settings.model_copy(update={
        "key_prefix": f"alerts-{tag}",
        "alert_webhook_urls": (fakes.receiver.base_url + paths["webhook"],),
        "alert_webhook_secret": SECRET,
        "alert_urls": (f"json://{host}{paths['json']}", f"form://{host}{paths['form']}"),
        "alert_retry_base_seconds": 0.01,
        "alert_claim_idle_seconds": 0,
        "docs_url": DOCS_URL,
    })  # fmt: skip
    runtime = await Runtime.open(await load_config(configured))
    alerting = Alerting(runtime, fakes.receiver, configured.key_prefix, paths)
    await alerting.deliver()  # creates the consumer group: alerts from here on
    yield alerting
    await runtime.close()


def webhook_payloads(alerting: Alerting) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in alerting.receiver.at(alerting.paths["webhook"])]


async def test_a_webhook_is_signed_and_the_signature_verifies(alerting: Alerting) -> None:
    await alerting.emit(events.REFRESH_FAILING, "user-1", error="timeout")
    await alerting.deliver()

    [request] = alerting.receiver.at(alerting.paths["webhook"])
    header = request.headers["Tokenlife-Signature"]
    assert verify(SECRET.encode(), header, request.body, now=time.time())
    assert not verify(b"wrong secret", header, request.body, now=time.time())
    assert not verify(SECRET.encode(), header, request.body + b" ", now=time.time())
    assert not verify(SECRET.encode(), header, request.body, now=time.time() + 3600)  # replay
    payload = json.loads(request.body)
    assert payload["type"] == "alert.refresh_failing" and payload["severity"] == "critical"
    assert request.headers["Idempotency-Key"] == payload["notification_id"]


async def test_one_notification_per_connection_and_type_within_the_window(
    alerting: Alerting, redis: Redis
) -> None:
    for _ in range(3):
        await alerting.emit(events.REFRESH_TOKEN_MISSING, "user-1", message="m")
    await alerting.emit(events.REFRESH_TOKEN_MISSING, "user-2", message="m")
    totals = await alerting.deliver()

    assert totals["suppressed"] == 2
    [payload] = webhook_payloads(alerting)
    assert sorted(payload["connection_ids"]) == ["user-1", "user-2"]

    # The window ends (what its TTL does after 6 hours): the next one is sent again.
    await redis.delete(alerting.keys.alert_sent("crm:user-1:alert.refresh_token_missing"))
    await alerting.emit(events.REFRESH_TOKEN_MISSING, "user-1", message="m")
    await alerting.deliver()
    assert [p["connection_ids"] for p in webhook_payloads(alerting)][1:] == [["user-1"]]


async def test_a_storm_of_1000_connections_is_one_message_per_target(alerting: Alerting) -> None:
    for n in range(1000):
        await alerting.emit(events.REFRESH_FAILING, f"user-{n}", error="server_error")
    totals = await alerting.deliver()

    assert totals["sent"] == 3
    for path in alerting.paths.values():
        assert len(alerting.receiver.at(path)) == 1, path
    [payload] = webhook_payloads(alerting)
    assert payload["count"] == 1000 and len(set(payload["connection_ids"])) == 1000
    form = alerting.receiver.at(alerting.paths["form"])[0]
    title = parse_qs(form.body.decode())["title"][0]
    assert title == "[tokenlife] crm: refresh failing (1000 connections)"


async def test_a_receiver_failing_twice_then_answering_gets_it_once(alerting: Alerting) -> None:
    alerting.receiver.script(alerting.paths["webhook"], 500, 500, 200)
    await alerting.emit(events.REAUTHORIZATION_REQUIRED, "user-1", error="invalid_grant")
    totals = await alerting.deliver()

    assert totals["sent"] == 3 and totals.get("dead_lettered", 0) == 0
    assert len(alerting.receiver.at(alerting.paths["webhook"], status=None)) == 3
    assert len(alerting.receiver.at(alerting.paths["webhook"])) == 1


async def test_a_receiver_down_for_good_ends_in_the_dead_letter(
    alerting: Alerting, redis: Redis
) -> None:
    alerting.receiver.script(alerting.paths["webhook"], 503)
    await alerting.emit(events.REAUTHORIZATION_REQUIRED, "user-1", error="invalid_grant")
    totals = await alerting.deliver()

    assert totals["dead_lettered"] == 1 and totals["sent"] == 2  # the Apprise targets got it
    dead = cast(list[tuple[str, dict[str, str]]],
                await redis.xrange(alerting.keys.alerts_dead))  # fmt: skip
    assert len(dead) == 1 and dead[0][1]["target"] == "webhook-1"
    assert "HTTP 503" in dead[0][1]["error"]
    counters = await redis.hgetall(alerting.keys.counters)
    assert counters["alerts:dead_lettered"] == "1"
    for shard in alerting.keys.all_shards:
        assert await redis.xpending(alerting.keys.events(shard), GROUP) == {
            "pending": 0,
            "min": None,
            "max": None,
            "consumers": [],
        }


async def test_an_alert_read_by_a_worker_that_died_is_delivered_once_by_the_next(
    alerting: Alerting, redis: Redis
) -> None:
    await alerting.emit(events.REFRESH_FAILING, "user-1", error="timeout")
    # A run that read the entry and died before sending or acknowledging it.
    streams: dict[Any, Any] = {alerting.keys.events(s): ">" for s in alerting.keys.all_shards}
    read: Any = await redis.xreadgroup(GROUP, "worker-that-died", streams, count=10)
    assert sum(len(entries) for _, entries in read) == 1

    await alerting.deliver()
    await alerting.deliver()

    assert len(webhook_payloads(alerting)) == 1
    for stream in streams:
        pending = await redis.xpending(stream, GROUP)
        assert pending["pending"] == 0


async def test_recovery_sends_a_resolved_notification_on_the_same_routes(
    alerting: Alerting,
) -> None:
    await alerting.emit(events.REFRESH_FAILING, "user-1", error="timeout")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-1", failed_attempts=3)
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-1", failed_attempts=1)
    await alerting.deliver()  # nothing left to resolve

    kinds = [p["kind"] for p in webhook_payloads(alerting)]
    assert kinds == ["alert", "resolved"]
    form = alerting.receiver.at(alerting.paths["form"])[-1]
    assert parse_qs(form.body.decode())["title"][0].startswith("[tokenlife] RESOLVED crm")


async def test_the_message_is_written_for_a_person(alerting: Alerting) -> None:
    await alerting.emit(
        events.REFRESH_TOKEN_MISSING, "user-1",
        message="Refresh token is not present and access token lifetime is too short.",
        requested={"scopes": ["openid", "profile"], "params": {"prompt": "select_account"}},
        access_token_lifetime_seconds=3599, refresh_token_received=False,
        minimum_lifetime_days=30,
        diagnosis=[{"cause": "c1", "fix": "Add offline_access to scopes.", "evidence": "e"},
                   {"cause": "c2", "fix": "Send prompt=consent.", "evidence": "e"}],
    )  # fmt: skip
    await alerting.deliver()

    message = json.loads(alerting.receiver.at(alerting.paths["json"])[0].body)
    body = message["message"]
    assert "Refresh token is not present and access token lifetime is too short." in body
    assert "Requested: scopes openid profile; prompt=select_account" in body
    assert "Came back: access token lifetime 3599 s (0.04 days); refresh token: no" in body
    assert "1. Add offline_access to scopes.\n2. Send prompt=consent." in body
    assert f"More: {DOCS_URL}#custom-providers" in body
    assert message["title"] == "[tokenlife] crm: refresh token missing (user-1)"


def apprise_types(alerting: Alerting) -> list[tuple[str, str]]:
    """(title, notify type) of what Apprise's json:// posted, in order."""
    sent = [json.loads(r.body) for r in alerting.receiver.at(alerting.paths["json"])]
    return [(m["title"], m["type"]) for m in sent]


async def test_apprise_notify_types_and_the_webhook_follow_severity(alerting: Alerting) -> None:
    await alerting.emit(events.REAUTHORIZATION_REQUIRED, "user-1", error="invalid_grant")
    await alerting.emit(events.REFRESH_FAILING, "user-2", error="timeout")
    await alerting.emit(events.ACCESS_TOKEN_EXPIRING, "user-3", expires_at="2099-01-01T00:00:00Z")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-2", failed_attempts=3)
    await alerting.deliver()

    assert apprise_types(alerting) == [
        ("[tokenlife] crm: re-authorization required (user-1)", "failure"),
        ("[tokenlife] crm: refresh failing (user-2)", "failure"),
        ("[tokenlife] crm: access token expiring (user-3)", "warning"),
        ("[tokenlife] RESOLVED crm: refresh failing (user-2)", "success"),
    ]
    hooks = [(p["type"], p["severity"], p["notify_type"]) for p in webhook_payloads(alerting)]
    assert hooks == [
        ("alert.reauthorization_required", "critical", "failure"),
        ("alert.refresh_failing", "critical", "failure"),
        ("alert.access_token_expiring", "warning", "warning"),
        ("alert.refresh_failing", "critical", "success"),
    ]
    keys = [p["incident_key"] for p in webhook_payloads(alerting)]
    assert keys[1] == keys[3] and len(set(keys)) == 3  # the resolution closes its alert


@pytest.mark.parametrize("same_run", [True, False])
async def test_a_degraded_connection_is_one_message_not_two_back_to_back(
    alerting: Alerting, same_run: bool
) -> None:
    expires_at = events.iso8601(time.time() + 3 * 3600 + 60)
    await alerting.emit(events.REFRESH_TOKEN_MISSING, "user-1", message="m",
                        expires_at=expires_at, status="degraded")  # fmt: skip
    if not same_run:
        await alerting.deliver()
    await alerting.emit(events.ACCESS_TOKEN_EXPIRING, "user-1", expires_at=expires_at)
    await alerting.emit(events.ACCESS_TOKEN_EXPIRING, "user-2", expires_at=expires_at)
    totals = await alerting.deliver()

    assert totals["folded"] == 1
    assert [(p["type"], p["connection_ids"]) for p in webhook_payloads(alerting)] == [
        ("alert.refresh_token_missing", ["user-1"]),
        ("alert.access_token_expiring", ["user-2"]),  # no earlier alert: told as it is
    ]
    [first, _] = webhook_payloads(alerting)
    assert "Access token expires at " in first["text"] and ", in 3 h" in first["text"]

    # Connected again with a refresh token: the degraded connection's alert resolves.
    await alerting.emit(events.CONNECTION_AUTHORIZED, "user-1", status="active")
    await alerting.deliver()
    resolved = webhook_payloads(alerting)[2:]
    assert [(p["kind"], p["type"]) for p in resolved] == [
        ("resolved", "alert.refresh_token_missing")
    ]


async def test_a_degraded_connection_whose_first_alert_failed_still_reaches_on_call(
    alerting: Alerting,
) -> None:
    """Folded only where the first alert was delivered: the webhook refused it (dead
    letter), so the webhook gets the second; the Apprise targets got the first."""
    alerting.receiver.script(alerting.paths["webhook"], 503, 503, 503, 503, 200)
    expires_at = events.iso8601(time.time() + 3 * 3600 + 60)
    await alerting.emit(events.REFRESH_TOKEN_MISSING, "user-1", message="m",
                        expires_at=expires_at, status="degraded")  # fmt: skip
    await alerting.emit(events.ACCESS_TOKEN_EXPIRING, "user-1", expires_at=expires_at)
    totals = await alerting.deliver()

    assert totals["dead_lettered"] == 1 and totals["folded"] == 1
    assert [p["type"] for p in webhook_payloads(alerting)] == ["alert.access_token_expiring"]
    assert [title for title, _ in apprise_types(alerting)] == [
        "[tokenlife] crm: refresh token missing (user-1)"
    ]


async def test_a_storm_resolves_when_its_last_connection_clears(alerting: Alerting) -> None:
    """One incident per grouped alert, closed by the RESOLVED of its key once every one of
    its connections has cleared (they clear one at a time)."""
    for n in range(3):
        await alerting.emit(events.REFRESH_FAILING, f"user-{n}", error="server_error")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-0", failed_attempts=3)
    await alerting.deliver()
    assert [p["kind"] for p in webhook_payloads(alerting)] == ["alert"]  # two still failing

    await alerting.emit(events.CONNECTION_RECOVERED, "user-2", failed_attempts=3)
    await alerting.emit(events.CONNECTION_RECOVERED, "user-1", failed_attempts=3)
    await alerting.deliver()
    [alert, resolved] = webhook_payloads(alerting)
    assert resolved["kind"] == "resolved" and resolved["incident_key"] == alert["incident_key"]
    assert sorted(resolved["connection_ids"]) == ["user-1", "user-2"]
    assert [title for title, _ in apprise_types(alerting)][1:] == [
        "[tokenlife] RESOLVED crm: refresh failing (2 connections)"
    ]

    # Failing again: a new alert (the claim went with the resolution) and a new incident.
    await alerting.emit(events.REFRESH_FAILING, "user-1", error="server_error")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-1", failed_attempts=3)
    await alerting.deliver()
    again, closed = webhook_payloads(alerting)[2:]
    assert (again["kind"], closed["kind"]) == ("alert", "resolved")
    assert again["incident_key"] == closed["incident_key"] != alert["incident_key"]


async def test_failing_and_clearing_in_one_run_keep_the_stream_order(alerting: Alerting) -> None:
    # Failed then recovered before a run: the alert and its RESOLVED, in that order.
    await alerting.emit(events.REFRESH_FAILING, "user-1", error="timeout")
    await alerting.emit(events.CONNECTION_RECOVERED, "user-1", failed_attempts=3)
    await alerting.deliver()
    # Recovered then failing again before a run: the RESOLVED, then a new alert that stays
    # open until its own recovery.
    await alerting.emit(events.REFRESH_FAILING, "user-2", error="timeout")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-2", failed_attempts=3)
    await alerting.emit(events.REFRESH_FAILING, "user-2", error="timeout")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_RECOVERED, "user-2", failed_attempts=3)
    await alerting.deliver()

    sent = [(p["kind"], p["connection_ids"], p["incident_key"]) for p in webhook_payloads(alerting)]
    assert [(kind, ids) for kind, ids, _ in sent] == [
        ("alert", ["user-1"]), ("resolved", ["user-1"]),
        ("alert", ["user-2"]), ("resolved", ["user-2"]), ("alert", ["user-2"]),
        ("resolved", ["user-2"]),
    ]  # fmt: skip
    assert sent[0][2] == sent[1][2] and sent[2][2] == sent[3][2] == sent[4][2] == sent[5][2]


async def test_an_alert_sent_before_incidents_existed_still_resolves(
    alerting: Alerting, redis: Redis
) -> None:
    """A claim from the version before this one (no incident kept, no "v"): its RESOLVED
    goes to the targets it names, with the key a single connection's alert had."""
    key = alerting.keys.alert_sent("crm:user-1:alert.refresh_failing")
    await redis.set(key, json.dumps({"event_id": "1-0", "targets": ["webhook-1"],
                                     "occurred_at": time.time()}))  # fmt: skip
    await alerting.emit(events.CONNECTION_RECOVERED, "user-1", failed_attempts=3)
    await alerting.deliver()

    [resolved] = webhook_payloads(alerting)
    assert (resolved["kind"], resolved["connection_ids"]) == ("resolved", ["user-1"])
    assert alerting.receiver.at(alerting.paths["json"]) == []
    assert await redis.exists(key) == 0


async def test_one_connect_clearing_two_alerts_resolves_both(alerting: Alerting) -> None:
    await alerting.emit(events.REFRESH_FAILING, "user-1", error="timeout")
    await alerting.emit(events.REAUTHORIZATION_REQUIRED, "user-1", error="invalid_grant")
    await alerting.deliver()
    await alerting.emit(events.CONNECTION_AUTHORIZED, "user-1", status="active")
    await alerting.deliver()

    alerts, resolved = webhook_payloads(alerting)[:2], webhook_payloads(alerting)[2:]
    assert sorted((p["kind"], p["type"]) for p in resolved) == [
        ("resolved", events.REAUTHORIZATION_REQUIRED), ("resolved", events.REFRESH_FAILING),
    ]  # fmt: skip
    assert {p["incident_key"] for p in resolved} == {p["incident_key"] for p in alerts}


async def test_two_preflight_findings_sharing_a_code_both_reach_on_call(
    alerting: Alerting,
) -> None:
    for fix in ("Add offline_access to scopes.", "Set extra_authorization_params.prompt."):
        await alerting.runtime.events.emit(
            events.CONFIGURATION, "crm", None, time.time(), severity="error",
            code="refresh_token_requirement_missing", message=f"lacks it: {fix}", fix=fix,
        )  # fmt: skip
    await alerting.deliver()

    fixes = sorted(p["events"][0]["fix"] for p in webhook_payloads(alerting))
    assert fixes == ["Add offline_access to scopes.", "Set extra_authorization_params.prompt."]
    assert [t for _, t in apprise_types(alerting)] == ["failure", "failure"]


async def test_the_worker_delivers_a_real_alert_through_its_beat_task(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, settings: Settings
) -> None:
    def deliver() -> None:
        worker.app.send_task("tokenlife.deliver_alerts", ignore_result=False).get(timeout=60)

    deliver()  # the group exists from here on
    cid = "user-" + uuid.uuid4().hex[:12]
    await connect(tl, worker, "google-as-custom", cid, login_hint=cid)
    deliver()

    async def received() -> bool:
        return any(cid in json.loads(r.body)["connection_ids"]
                   for r in fakes.receiver.at("/session-hook"))  # fmt: skip

    await wait_until(received, timeout=30, what="the alert at the session webhook")
    [payload] = [p for r in fakes.receiver.at("/session-hook")
                 if cid in (p := json.loads(r.body))["connection_ids"]]  # fmt: skip
    assert payload["type"] == "alert.refresh_token_missing"
    assert 'Use provider "google"' in payload["text"]
    assert urlsplit(fakes.receiver.base_url).hostname == "127.0.0.1"
