"""After a Redis restart the first requests do not fail (issue 9 §4).

A redis-server of this test's own (AOF on, appendfsync everysec) is SIGKILLed and
restarted on the same files and port while the API app, a Runtime and a real worker
hold pooled connections to it. The first API request afterwards must answer as before,
the services must work without an error, and the worker must run its tasks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.support import Fakes, client_app, start_worker, wait_for, wait_until
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.core import events
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

KEY = "redis-restart-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class OwnRedis:
    """A redis-server on a free port of 127.0.0.1, in its own process group."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server") or str(
            Path(sys.executable).parent / "redis-server"
        )
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = sync_redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: self._answers(client), timeout=20, what="redis-server to start")
        client.close()

    def _answers(self, client: sync_redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except sync_redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def restart_settings(settings: Settings, own_redis: OwnRedis) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": own_redis.url,
            "key_prefix": f"restart-{uuid.uuid4().hex[:6]}",
            "api_keys": (KEY,),
        }
    )


@pytest.fixture
async def runtime(restart_settings: Settings, fakes: Fakes) -> AsyncIterator[Runtime]:
    opened = await Runtime.open(await load_config(restart_settings))
    yield opened
    await opened.close()


async def save(runtime: Runtime, connection_id: str) -> None:
    await runtime.tokens.save(
        integration="google", connection_id=connection_id, provider="google",
        tokens=TokenSet(access_token="access-" + uuid.uuid4().hex, token_type="Bearer",
                        refresh_token="refresh-" + uuid.uuid4().hex,
                        expires_at=time.time() + 3600, lifetime_seconds=3600,
                        lifetime_source="expires_in", granted_scopes=("openid",)),
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=("openid",),
        next_check_at=None, now=time.time(),
    )  # fmt: skip


async def test_the_first_requests_after_a_redis_restart_succeed(
    runtime: Runtime, own_redis: OwnRedis
) -> None:
    cid = f"restart-{uuid.uuid4().hex[:8]}"
    await save(runtime, cid)
    async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
        # Every pooled connection in use once, so the pool holds stale ones after the kill.
        await asyncio.gather(*(client.get(f"/api/connections/google/{cid}", headers=AUTH)
                               for _ in range(8)))  # fmt: skip
        before = await client.post(f"/api/connections/google/{cid}/token", headers=AUTH)
        assert before.status == 200

        own_redis.kill()
        own_redis.start()  # the same port and AOF file

        first = await client.post(f"/api/connections/google/{cid}/token", headers=AUTH)
        assert first.status == 200, await first.text()
        assert (await first.json())["access_token"] == (await before.json())["access_token"]
        shown = await client.get(f"/api/connections/google/{cid}", headers=AUTH)
        assert shown.status == 200
        ready = await client.get("/readyz")
        assert (await ready.json())["redis"] is True
        queued = await client.post(f"/api/connections/google/{cid}/refresh", headers=AUTH)
        assert queued.status == 202  # the Celery publisher reconnected too

    # The services, on their own pooled connections: no error either.
    own_redis.kill()
    own_redis.start()
    connection = await runtime.tokens.get("google", cid)
    assert connection.status is Status.ACTIVE
    assert (await runtime.access.get("google", cid)).access_token


async def test_a_worker_keeps_working_after_a_redis_restart(
    restart_settings: Settings, own_redis: OwnRedis, fakes: Fakes, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    app = client_app(restart_settings)
    heartbeat = Keys(restart_settings.key_prefix, restart_settings.redis_shards).heartbeat
    clients: list[sync_redis.Redis] = []

    def last_tick() -> float:
        """The worker's clients write the heartbeat at every tick (RefreshSchedule.tick)."""
        if not clients:
            clients.append(sync_redis.Redis.from_url(own_redis.url, decode_responses=True))
        value = clients[0].get(heartbeat)
        return float(str(value)) if value is not None else 0.0

    async def ticks_after(moment: float) -> bool:
        # What beat sends every second. Publishing may fail while the broker restarts.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(app.send_task, "tokenlife.refresh_due", ignore_result=True)
        return last_tick() > moment

    with log_path.open("wb") as log:
        process = start_worker(restart_settings, tmp_path, log, f"restart-{uuid.uuid4().hex[:6]}")
        try:
            await wait_until(
                lambda: _alive(process, app), timeout=60, what="the worker to answer ping"
            )
            await wait_until(lambda: ticks_after(0), timeout=30, what="a tick before the kill")
            # An idle worker at the kill; a task in flight is the next test's case.
            await wait_until(lambda: _idle(clients[0], restart_settings), timeout=30,
                             what="the worker to acknowledge every tick")  # fmt: skip

            own_redis.kill()
            clients.pop().close()
            own_redis.start()
            restarted = time.time()

            await wait_until(lambda: ticks_after(restarted), timeout=60,
                             what="a tick to run after the restart")  # fmt: skip
            recovered = time.time() - restarted
            # Once back, every tick runs: the worker's own Redis clients reconnected.
            for _ in range(3):
                await wait_until(
                    partial(ticks_after, last_tick()), timeout=10, what="the next tick"
                )
            text = log_path.read_text(errors="replace")
            assert "raised unexpected" not in text, text[-3000:]
            print(f"the worker ran ticks again {recovered:.1f} s after Redis restarted")
        finally:
            _stop_quickly(process)
            app.close()
            for client in clients:
                client.close()


async def _alive(process: subprocess.Popen[bytes], app: Any) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"worker exited with {process.returncode}")
    return bool(await asyncio.to_thread(app.control.ping, timeout=0.5))


async def _idle(client: sync_redis.Redis, settings: Settings) -> bool:
    """No message queued or delivered-but-unacknowledged (kombu's Redis transport keys)."""
    prefix = f"{settings.key_prefix}:celery:"
    queued = client.llen(prefix + settings.key_prefix)
    unacked = client.hlen(prefix + "unacked")
    return queued == 0 and unacked == 0


def _stop_quickly(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown, but after a reconnect Celery's may hang for its full 30 s: then
    SIGKILL this worker and its pool processes (by pid; they are this test's)."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        for child in _children(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        process.kill()
        process.wait(timeout=10)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


async def test_a_task_in_flight_when_redis_dies_does_not_stop_the_worker(
    restart_settings: Settings, own_redis: OwnRedis, fakes: Fakes, tmp_path: Path
) -> None:
    """Celery 5.7 / kombu 5.7 exit the worker when the broker connection drops while a
    message is delivered but not acknowledged (tokenlife.broker_transport explains); an
    alert delivery held by a slow webhook keeps one in flight at the kill."""
    hook = SlowWebhook()
    app_ = web.Application()
    app_.router.add_post("/hook", hook.handle)
    async with TestServer(app_, host="127.0.0.1") as server:
        configured = restart_settings.model_copy(update={
            "alert_webhook_urls": (f"http://127.0.0.1:{server.port}/hook",),
            "alert_retries": 3,
        })  # fmt: skip
        keys = Keys(configured.key_prefix, configured.redis_shards)
        app = client_app(configured)
        client = sync_redis.Redis.from_url(own_redis.url, decode_responses=True)
        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            process = start_worker(configured, tmp_path, log, f"inflight-{uuid.uuid4().hex[:6]}")
            try:
                await wait_until(lambda: _alive(process, app), timeout=60, what="ping")
                app.send_task("tokenlife.deliver_alerts", ignore_result=True)  # the group
                streams = [keys.events(shard) for shard in keys.all_shards]
                await wait_until(lambda: _has_groups(client, streams), timeout=30,
                                 what="the delivery consumer groups")  # fmt: skip
                emitter = Redis.from_url(own_redis.url, decode_responses=True)
                await EventStream(emitter, keys, 1000).emit(
                    events.CONFIGURATION, "crm", None, time.time(), severity="error",
                    code="test", message="a finding", fix="fix it", source=None,
                )  # fmt: skip
                await emitter.aclose()
                app.send_task("tokenlife.deliver_alerts", ignore_result=True)

                async def in_flight() -> bool:
                    return hook.calls > 0

                await wait_until(in_flight, timeout=30, what="the delivery to hang on the hook")
                own_redis.kill()  # with the delivery task delivered, unacknowledged
                client.close()
                own_redis.start()
                client = sync_redis.Redis.from_url(own_redis.url, decode_responses=True)
                heartbeat = keys.heartbeat

                async def ticked() -> bool:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(app.send_task, "tokenlife.refresh_due",
                                                ignore_result=True)  # fmt: skip
                    return client.get(heartbeat) is not None

                # kombu's reconnect waits 2, 4, 6 ... s between tries (Celery's broker
                # connection retry): on a loaded machine the restart can take a few of them.
                try:
                    await wait_until(ticked, timeout=120, what="a tick after the restart")
                except AssertionError as exc:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{exc}\nworker log:\n{tail}") from None
                text = log_path.read_text(errors="replace")
                assert "Unrecoverable error" not in text, text[-3000:]
                assert process.poll() is None
            finally:
                _stop_quickly(process)
                app.close()
                client.close()


class SlowWebhook:
    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await asyncio.sleep(30)  # past the worker's HTTP timeout: every attempt times out
        return web.Response(text="late")


async def _has_groups(client: sync_redis.Redis, streams: list[str]) -> bool:
    """Every shard's stream has its consumer group (the event emitted goes to one)."""
    try:
        return all(client.xinfo_groups(stream) for stream in streams)
    except sync_redis.ResponseError:
        return False  # no stream yet
