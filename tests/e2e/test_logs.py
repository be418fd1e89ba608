"""Logs (docs/logging.md): JSON lines with the connection and task on them, no secret on
any path, and beat quiet at INFO. Real worker and API processes; the in-process tests at
the top check the configuration itself."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from multidict import CIMultiDict, CIMultiDictProxy
from redis.asyncio import Redis
from yarl import URL

from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    consent,
    events_for,
    exchange,
    make_due,
    run_refresh_tick,
    serving_api,
    stop_worker,
    wait_for,
    worker_environment,
)
from tokenlife import logs
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

API_KEY = "logs-test-api-key-0123456789abcdef"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """configure() into a buffer; the pytest process's logging is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = False
    logging.getLogger("apprise").setLevel(logging.NOTSET)
    structlog.reset_defaults()
    logs.clear()


def lines(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a log (Celery's start-up banner is plain text)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("environ", "level", "fmt"),
    [
        ({}, None, "auto"),
        ({"TOKENLIFE_LOG_LEVEL": "debug", "TOKENLIFE_LOG_FORMAT": "JSON"}, "DEBUG", "json"),
        ({"TOKENLIFE_LOG_LEVEL": "", "TOKENLIFE_LOG_FORMAT": "console"}, None, "console"),
    ],
)
def test_log_settings(
    environ: dict[str, str], level: str | None, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENLIFE_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TOKENLIFE_LOG_FORMAT", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.log_level, settings.log_format) == (level, fmt)


def test_conceal_keeps_the_latest_values_only(captured: io.StringIO) -> None:
    logs.configure(level="INFO", fmt="json", stream=captured)
    for n in range(100):  # a long-lived caller asking for many tokens
        logs.conceal(f"token-number-{n:04d}")
    logging.getLogger("tokenlife.test").warning("token-number-0099 token-number-0000")
    [line] = lines(captured.getvalue())
    assert line["message"] == "[redacted] token-number-0000"


def test_a_crash_traceback_loses_its_secrets(captured: io.StringIO) -> None:
    logs.configure(level="INFO", fmt="json", stream=captured)
    # What aiohttp raises: the URL with its query string is in the exception's text.
    info = aiohttp.RequestInfo(
        URL("https://p.example/token?code=c-secret-1&x=1"), "POST",
        CIMultiDictProxy(CIMultiDict({"Authorization": "Bearer at-secret-2"})),
    )  # fmt: skip
    try:
        raise aiohttp.ClientResponseError(info, (), status=400, message="Bad Request")
    except aiohttp.ClientResponseError:
        logging.getLogger("tokenlife.test").exception("token request crashed")
    [line] = lines(captured.getvalue())
    assert line["message"] == "token request crashed" and line["level"] == "error"
    assert "Traceback" in line["exception"] and "code=[redacted]&x=1" in line["exception"]
    assert "c-secret-1" not in captured.getvalue()


async def test_each_asyncio_task_logs_its_own_connection(captured: io.StringIO) -> None:
    logs.configure(level="INFO", fmt="json", stream=captured)
    log = logging.getLogger("tokenlife.test")

    async def refresh(cid: str, token: str) -> None:
        logs.bind_connection("google", cid, "google")
        logs.conceal(token)
        await asyncio.sleep(0.01)  # interleave with the other connection
        log.warning("provider said: refresh token %s is invalid", token)

    await asyncio.gather(refresh("u1", "rt-one-0123456789"), refresh("u2", "rt-two-0123456789"))
    log.info("after the batch")
    got = lines(captured.getvalue())
    assert {(x["connection_id"], x["message"]) for x in got[:2]} == {
        ("u1", "provider said: refresh token [redacted] is invalid"),
        ("u2", "provider said: refresh token [redacted] is invalid"),
    }
    assert "connection_id" not in got[2]  # the tasks' context never leaked out


def test_console_on_a_terminal_and_tick_lines_only_at_debug(captured: io.StringIO) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    beat = logging.getLogger("celery.beat")
    terminal = Terminal()
    logs.configure(level="INFO", fmt="auto", stream=terminal)
    beat.info(
        "Scheduler: Sending due task %s (%s)", "tokenlife.refresh_due", "tokenlife.refresh_due"
    )
    beat.info("Scheduler: Sending due task %s (%s)", "nightly", "app.nightly")
    assert "[info" in terminal.getvalue() and "app.nightly" in terminal.getvalue()
    assert "tokenlife.refresh_due" not in terminal.getvalue()
    assert not terminal.getvalue().startswith("{")
    logs.configure(level="DEBUG", fmt="auto", stream=captured)
    beat.info(
        "Scheduler: Sending due task %s (%s)", "tokenlife.refresh_due", "tokenlife.refresh_due"
    )
    [line] = lines(captured.getvalue())
    assert line["level"] == "debug" and "tokenlife.refresh_due" in line["message"]


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`tokenlife api` as a process; its log (stderr) in a file, so JSON lines."""
    with serving_api(settings, tmp_path, API_KEY) as served:
        yield served


def deliver_alerts(worker: WorkerHandle) -> None:
    worker.app.send_task("tokenlife.deliver_alerts", ignore_result=False).get(timeout=30)


def has_line(text: str, fragment: str, **fields: str) -> bool:
    return any(
        fragment in line.get("message", "") and all(line.get(k) == v for k, v in fields.items())
        for line in lines(text)
    )


async def test_known_secrets_never_reach_the_logs(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings,
    api: tuple[str, Path],
) -> None:  # fmt: skip
    base, api_log = api
    # Alert delivery reads the stream from when its consumer group was made: make it now.
    await asyncio.to_thread(deliver_alerts, worker)
    tag = uuid.uuid4().hex[:8]
    via_api, via_worker = f"logs-a-{tag}", f"logs-b-{tag}"
    known = [
        API_KEY,
        "google-secret",
        settings.alert_webhook_secret or "",
        *settings.encryption_keys,
    ]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http:
        # An exchange through the API's callback, and a callback with a stranger's state.
        a = await consent(tl, "google", via_api, login_hint=via_api)
        async with http.get(f"{base}/oauth/callback", params=a, allow_redirects=False) as r:
            assert r.status == 200, await r.text()
        stranger = {"state": f"stranger-state-{tag}", "code": f"stranger-code-{tag}"}
        async with http.get(f"{base}/oauth/callback", params=stranger) as r:
            assert r.status == 400
        # On demand, through the API: a refresh, then a refusal that echoes the token.
        token_url = f"{base}/api/connections/google/{via_api}/token"
        await make_due(redis, settings, "google", via_api, expires_at=repr(time.time() - 5))
        async with http.post(token_url, headers=auth) as r:
            assert r.status == 200, await r.text()
        echo = fakes.google.families[a["code"]].live
        assert echo is not None
        fakes.google.script_refresh(a["code"], Reply(status=400, body=json.dumps({
            "error": "invalid_grant", "error_description": f"refresh token {echo} was revoked",
            "refresh_token": echo}).encode()))  # fmt: skip
        await make_due(redis, settings, "google", via_api, expires_at=repr(time.time() - 5))
        async with http.post(token_url, headers=auth) as r:
            assert r.status == 409, await r.text()
    # The echo stays out of the event (and so out of alerts and webhooks) too.
    [refused_event] = [d for t, d in await events_for(redis, settings, via_api)
                       if t == "alert.reauthorization_required"]  # fmt: skip
    assert refused_event["error_description"] == "refresh token [redacted] was revoked"
    # The worker: an exchange refused with the code echoed, an exchange, a scheduled
    # refresh, a failing one that echoes the token.
    refused = f"logs-c-{tag}"
    c = await consent(tl, "google", refused, login_hint=refused)
    used = {"error": "invalid_grant", "error_description": f"code {c['code']} was already used"}
    fakes.google.script(c["code"], Reply(status=400, body=json.dumps(used).encode()))
    assert (await exchange(worker, state=c["state"], code=c["code"]))["outcome"] == "failed"
    b = await consent(tl, "google", via_worker, login_hint=via_worker)
    await exchange(worker, state=b["state"], code=b["code"])
    b_fields = {"integration": "google", "connection_id": via_worker, "provider": "google"}

    async def refresh_until(done: Callable[[], bool], what: str) -> None:
        # A tick right after the last refresh may find its lock still held ("locked"): tick
        # again, as beat would.
        deadline = time.monotonic() + 15
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await make_due(redis, settings, "google", via_worker)
            await run_refresh_tick(worker)
            await asyncio.sleep(0.2)

    await refresh_until(lambda: fakes.google.refreshes(b["code"]) >= 1, "the refresh")
    live = fakes.google.families[b["code"]].live or ""
    busy = {"error": "temporarily_unavailable",
            "error_description": f"try {live} later; Authorization: Bearer {live}"}  # fmt: skip
    fakes.google.script_refresh(b["code"], Reply(status=400, body=json.dumps(busy).encode()))
    await refresh_until(
        lambda: has_line(worker.log(), "failed (temporarily_unavailable", **b_fields),
        "the failed refresh's line",
    )
    # Crashes: Celery logs the task's exception and traceback, here with secret-shaped text.
    crash = [f"access_token=crash-one-{tag}", {"refresh_token": f"crash-two-{tag}"}]
    crashed = [worker.app.send_task("tokenlife.refresh_batch", args=[[item]]).id for item in crash]
    # A webhook that refuses every delivery: the alerts above end in the dead letter.
    fakes.receiver.script("/session-hook", 500)
    try:
        await asyncio.to_thread(deliver_alerts, worker)
    finally:
        fakes.receiver.script("/session-hook", 200)

    def worker_saw(fragment: str, **fields: str) -> bool:
        return has_line(worker.log(), fragment, **fields)

    def crash_lines() -> list[dict[str, Any]]:
        return [x for x in lines(worker.log()) if any(i in x.get("message", "") for i in crashed)
                and "raised unexpected" in x["message"]]  # fmt: skip

    wait_for(lambda: len(crash_lines()) == 2, timeout=10, what="both crashes' lines")
    worker_log, served = worker.log(), api_log.read_text()
    known += [a["code"], a["state"], b["code"], b["state"], c["code"], c["state"]]
    known += stranger.values()
    known += [*fakes.google.issued_secrets, f"crash-one-{tag}", f"crash-two-{tag}"]
    for secret in filter(None, known):
        assert secret not in worker_log, f"{secret!r} in the worker log"
        assert secret not in served, f"{secret!r} in the API log"
    # What should be there is there, with the connection and the task on it.
    assert all("Traceback" in x["exception"] and "[redacted]" in x["message"]
               for x in crash_lines())  # fmt: skip
    stored = [x for x in lines(worker_log) if x.get("message", "").startswith("connection ")
              and x.get("connection_id") in (via_api, via_worker)]  # fmt: skip
    assert {x["connection_id"] for x in stored} == {via_api, via_worker}
    assert all(x["provider"] == "google" and x["task_id"] for x in stored)
    assert worker_saw("failed (temporarily_unavailable", **b_fields, task="tokenlife.refresh_batch")
    assert worker_saw("alert to")  # the dead letter
    assert worker_saw("failed: invalid_grant (code [redacted] was already used)",
                      integration="google", connection_id=refused, provider="google")  # fmt: skip
    assert has_line(served, "needs re-authorization", integration="google",
                    connection_id=via_api, provider="google")  # fmt: skip
    assert all(line.startswith("{") for line in served.splitlines() if line.strip())


def test_beat_at_info_logs_one_summary_for_the_fleet_and_only_json(
    settings: Settings, tmp_path: Path
) -> None:
    """`tokenlife worker --no-beat` with two pool processes and `tokenlife beat`, ticking
    every second, their output not a terminal: every line on stdout and stderr is JSON
    (no Celery banner, no plain `tokenlife:` line, the shutdown included); Celery's three
    lines a tick stay at DEBUG; the summary (every 2 s here, a minute by default) is one
    INFO line a period for both processes, without the task id of the tick that logged it."""
    quiet = settings.model_copy(update={"key_prefix": f"{settings.key_prefix}-beat"})
    env = {**worker_environment(quiet), "TOKENLIFE_LOG_SUMMARY_SECONDS": "2"}
    env.pop("TOKENLIFE_LOG_FORMAT", None)  # auto: JSON, as stdout and stderr are files
    cli = [sys.executable, "-m", "tokenlife.cli"]
    commands = {
        "worker": [*cli, "worker", "--no-beat", "--pool", "prefork", "--concurrency", "2",
                   "--hostname", f"beat-{quiet.key_prefix}@%h", "--without-gossip",
                   "--without-mingle"],
        "beat": [*cli, "beat", "--schedule", str(tmp_path / "schedule")],
    }  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in commands.items():
        with (
            (tmp_path / f"{name}.out").open("wb") as out,
            (tmp_path / f"{name}.err").open("wb") as err,
        ):
            processes[name] = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=err)
    worker_log = tmp_path / "worker.err"

    def summaries() -> list[dict[str, Any]]:
        return [x for x in lines(worker_log.read_text()) if "ticks" in x]

    try:
        wait_for(lambda: any(p.poll() is not None for p in processes.values())
                 or len(summaries()) >= 2, timeout=30, what="two summary lines")  # fmt: skip
        assert all(p.poll() is None for p in processes.values()), worker_log.read_text()
    finally:
        for process in processes.values():
            stop_worker(process)
    output = {path.name: path.read_text() for path in tmp_path.glob("*.[oe][ur][tr]")}
    for name, text in output.items():
        for line in text.splitlines():
            assert line.startswith("{") and json.loads(line), f"{name}: {line!r}"
    assert output["worker.out"] == output["beat.out"] == ""
    got = lines(worker_log.read_text())
    ticks = [x for x in got if "ticks" in x]
    # One line a period for both pool processes (each process logged its own before).
    starts = [x["period_start"] for x in ticks]
    assert len(starts) == len(set(starts)) and sum(x["ticks"] for x in ticks) >= 2
    assert all(x["level"] == "info" and "task_id" not in x for x in ticks)
    noisy = [x["message"] for x in got if "refresh_due" in x["message"]
             or "deliver_alerts" in x["message"]]  # fmt: skip
    assert noisy == []  # ~3 INFO lines a second without the filter
    assert any("integrations:" in x["message"] for x in got)  # was a plain stderr line
    assert any("warm shutdown" in x["message"] for x in got)  # was plain text on stdout
