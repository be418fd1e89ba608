"""tokenlife.sync.Tokenlife against the fake providers and real Redis: the whole flow
blocking, from many threads at once, from a forked child (os.fork and multiprocessing),
never inside an event loop, within its timeout, and a close that lets a refresh in flight
be saved. Plain (not async) tests: their thread runs no event loop, as a Django view's."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis as sync_redis
import requests

from tests.e2e.browser import serving
from tests.e2e.test_library import APP, KEY, through_connect_link
from tests.fakes.base import Reply
from tests.support import Fakes, wait_for
from tokenlife import sync
from tokenlife.adapters.keys import Keys
from tokenlife.errors import TransientError, UnknownConnectionError, UsageError
from tokenlife.models import Connection, ConnectSession, Deletion, ExchangeResult
from tokenlife.settings import Settings

INTEGRATION = "generic-offline"  # rotates refresh tokens and detects their reuse


@pytest.fixture
def configured(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": (KEY,), "api_return_to_allowed": (APP,)})


@pytest.fixture
def tl(configured: Settings) -> Iterator[sync.Tokenlife]:
    with sync.Tokenlife.from_environment(configured) as instance:
        yield instance


def consent(url: str, **user: str) -> dict[str, str]:
    """At the fake provider, as a browser: the query it sends back to the callback."""
    answer = requests.get(url, params=user, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def connect(tl: sync.Tokenlife, integration: str = INTEGRATION) -> tuple[str, str]:
    """A connection made in-process: (its id, the code, which names its token family)."""
    cid = f"sync-{uuid.uuid4().hex[:8]}"
    callback = consent(tl.authorize_url(integration, cid), login_hint=cid)
    result = tl.exchange_callback(state=callback["state"], code=callback["code"])
    assert result.ok and result.refresh_token_received, result
    return cid, callback["code"]


def expiring(settings: Settings, cid: str) -> None:
    """Its token expires inside the leeway: the next access_token refreshes it first."""
    keys = Keys(settings.key_prefix, settings.redis_shards)
    with sync_redis.Redis.from_url(settings.redis_url) as client:
        client.hset(keys.connection(INTEGRATION, cid), "expires_at", repr(time.time() + 30))


def refresh_requests(fakes: Fakes) -> int:
    return sum(1 for r in fakes.generic.token_requests if r.get("grant_type") == "refresh_token")


def test_connect_session_to_delete_blocking(
    tl: sync.Tokenlife, configured: Settings, fakes: Fakes
) -> None:
    cid = f"sync-{uuid.uuid4().hex[:8]}"
    session = tl.create_connect_session("google", cid, return_to=APP)
    assert isinstance(session, ConnectSession)

    async def through_the_api() -> dict[str, str]:
        async with serving(configured) as api:
            return await through_connect_link(api, session, cid)

    callback = asyncio.run(through_the_api())  # this thread runs no loop of its own
    result = tl.exchange_callback(state=callback["state"], code=callback["code"])
    assert (result.outcome, result.return_to) == ("refreshable", APP)

    token = tl.access_token("google", cid)
    assert token.access_token in fakes.google.issued_secrets
    assert tl.refresh("google", cid).version == 2
    assert tl.get_access_token("google", cid).access_token != token.access_token
    listed = list(tl.connections(integration="google", limit=1))
    assert [c.connection_id for c in listed].count(cid) == 1
    assert all(isinstance(c, Connection) for c in listed)
    assert tl.connection("google", cid).version == 2
    assert tl.delete("google", cid) == Deletion(True, True, True, None, None)
    with pytest.raises(UnknownConnectionError):
        tl.connection("google", cid)
    assert "google" in [i.name for i in tl.integrations()]


def test_many_threads_at_once_get_one_refresh(
    tl: sync.Tokenlife, configured: Settings, fakes: Fakes
) -> None:
    cid, family = connect(tl)
    expiring(configured, cid)
    fakes.generic.script_refresh(family, Reply(delay=0.3))  # a slow provider widens the race
    start = threading.Barrier(16)
    tokens: list[str] = []
    failures: list[BaseException] = []

    def view() -> None:  # a Django view, one thread each
        start.wait(timeout=10)
        try:
            tokens.append(tl.access_token(INTEGRATION, cid).access_token)
            tl.connection(INTEGRATION, cid)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=view) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not failures, failures
    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert fakes.generic.refreshes(family) == 1
    assert fakes.generic.families[family].reuse_detected == 0


def _in_child(tl: sync.Tokenlife, cid: str) -> dict[str, Any]:
    """What a Celery prefork child does with the module-level facade it inherited."""
    connection = tl.connection(INTEGRATION, cid)
    token = tl.access_token(INTEGRATION, cid)
    loop = sync._loop_thread
    return {
        "version": connection.version,
        "token": token.access_token,
        "own_loop": loop is not None and loop.pid == os.getpid() and loop.thread.is_alive(),
    }


def test_a_forked_child_opens_its_own_and_leaves_the_parents_alone(
    tl: sync.Tokenlife, fakes: Fakes
) -> None:
    cid, _ = connect(tl)
    before = tl.access_token(INTEGRATION, cid)  # the parent's loop, thread and sockets
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without pytest's teardown
        status = 1
        try:
            os.write(write, json.dumps(_in_child(tl, cid)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read() or "null")
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0 and report is not None
    assert report["own_loop"] and report["version"] == 1
    assert report["token"] == before.access_token
    # The parent's connections were not touched: it goes on as before, pooled and all.
    assert [tl.connection(INTEGRATION, cid).version for _ in range(5)] == [1] * 5
    assert tl.access_token(INTEGRATION, cid) == before


def _report_from_child(tl: sync.Tokenlife, cid: str, answers: Any) -> None:
    answers.put(_in_child(tl, cid))


def test_a_multiprocessing_fork_child_works_too(tl: sync.Tokenlife) -> None:
    cid, _ = connect(tl)
    tl.connection(INTEGRATION, cid)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_report_from_child, args=(tl, cid, answers))
    child.start()
    report = answers.get(timeout=60)
    child.join(timeout=30)
    answers.close()
    answers.join_thread()

    assert child.exitcode == 0 and report["own_loop"] and report["version"] == 1
    assert tl.connection(INTEGRATION, cid).version == 1


async def test_inside_a_running_event_loop_it_refuses_rather_than_block(
    configured: Settings,
) -> None:
    tl = sync.Tokenlife.from_environment(configured)  # reads settings only: fine here
    with pytest.raises(UsageError, match="runs an event loop"):
        tl.integrations()
    with pytest.raises(UsageError, match="runs an event loop"):
        tl.close()
    await asyncio.to_thread(tl.open)  # from a thread of its own it is the sync API again
    try:
        assert await asyncio.to_thread(tl.integrations)

        async def on_its_own_loop() -> Any:
            return tl.integrations()

        own = asyncio.run_coroutine_threadsafe(on_its_own_loop(), sync._process_loop().loop)
        with pytest.raises(UsageError, match="runs an event loop"):
            await asyncio.wrap_future(own)  # refused, not a deadlock
    finally:
        await asyncio.to_thread(tl.close)


def short_timeout(settings: Settings, timeout: float) -> sync.Tokenlife:
    """A facade whose calls wait `timeout`, opened first however long opening takes on a
    loaded machine: an open that timed out goes on, and asking again waits for it."""
    short = sync.Tokenlife.from_environment(settings, timeout=timeout)

    def opened() -> bool:
        try:
            short.open()
        except TransientError:
            return False
        return True

    wait_for(opened, timeout=60, what="the short-timeout facade to open")
    return short


def test_a_call_past_its_timeout_raises_and_the_refresh_is_still_saved(
    tl: sync.Tokenlife, configured: Settings, fakes: Fakes
) -> None:
    cid, family = connect(tl)
    expiring(configured, cid)
    fakes.generic.script_refresh(family, Reply(delay=0.6))
    with short_timeout(configured, 0.2) as short:
        with pytest.raises(TransientError, match=r"within 0\.2 s") as raised:
            short.access_token(INTEGRATION, cid)
        assert raised.value.retry_after is not None
        wait_for(lambda: tl.connection(INTEGRATION, cid).version == 2, timeout=10,
                 what="the refresh the caller gave up on to be saved")  # fmt: skip
    assert fakes.generic.families[family].reuse_detected == 0


def test_an_exchange_past_its_timeout_gives_its_outcome_to_the_same_state_again(
    tl: sync.Tokenlife, configured: Settings, fakes: Fakes
) -> None:
    cid = f"sync-{uuid.uuid4().hex[:8]}"
    callback = consent(tl.authorize(INTEGRATION, cid).url, login_hint=cid)
    fakes.generic.script(callback["code"], Reply(delay=0.6))
    with short_timeout(configured, 0.2) as short:
        with pytest.raises(TransientError, match=r"within 0\.2 s"):
            short.exchange_callback(state=callback["state"], code=callback["code"])
        answers: list[ExchangeResult] = []

        def sent_again() -> bool:  # as a reload of the app's callback page sends it
            try:
                answers.append(short.exchange_callback(state=callback["state"],
                                                       code=callback["code"]))  # fmt: skip
            except TransientError:  # still past the timeout: the exchange runs on
                return False
            return True

        wait_for(sent_again, timeout=10, what="the exchange's outcome")
    result = answers[-1]
    assert (result.ok, result.final, result.connection_id) == (True, True, cid), result
    assert result.refresh_token_received
    assert sum(1 for r in fakes.generic.token_requests
               if r.get("code") == callback["code"]) == 1  # fmt: skip


def test_close_waits_for_a_refresh_in_flight(configured: Settings, fakes: Fakes) -> None:
    tl = sync.Tokenlife.from_environment(configured)
    cid, family = connect(tl)
    expiring(configured, cid)
    fakes.generic.script_refresh(family, Reply(delay=0.5))
    asked = refresh_requests(fakes)
    caller = threading.Thread(target=lambda: tl.access_token(INTEGRATION, cid), daemon=True)
    caller.start()
    wait_for(lambda: refresh_requests(fakes) > asked, timeout=10, what="the refresh to be sent")

    tl.close()

    with sync.Tokenlife.from_environment(configured) as other:
        assert other.connection(INTEGRATION, cid).version == 2  # saved before close ended
    caller.join(timeout=10)
    with pytest.raises(UsageError, match="closed"):
        tl.connection(INTEGRATION, cid)
    tl.close()  # twice is fine


def test_a_dead_loop_thread_is_replaced_rather_than_every_call_timing_out(
    configured: Settings,
) -> None:
    with sync.Tokenlife.from_environment(configured, timeout=5) as tl:
        assert tl.integrations()
        dead = sync._process_loop()
        dead.loop.call_soon_threadsafe(dead.loop.stop)
        dead.thread.join(timeout=10)
        assert not dead.thread.is_alive()

        started = time.monotonic()
        assert tl.integrations()  # opened anew on a new loop, not a 5 s timeout
        assert time.monotonic() - started < 5
        assert sync._process_loop() is not dead
