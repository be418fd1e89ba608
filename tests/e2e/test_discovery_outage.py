"""One issuer down at start (issue 9 §5): the others work, the integration is unavailable
with a clear error and readiness detail, a background retry brings it back, and the last
good discovery document (cached in Redis) lets the next start use it at once."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.fakes.issuer import Issuer, serve_issuer
from tests.support import (
    Fakes,
    client_app,
    put_on_schedule,
    start_worker,
    stop_worker,
    stream_events,
    wait_for,
    wait_until,
    worker_environment,
)
from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.keys import Keys
from tokenlife.core.connect_session import SessionRequest
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import IntegrationUnavailableError
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

KEY = "discovery-outage-key-0123456789"


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with serve_issuer() as state:
        yield state


def outage_settings(settings: Settings, fakes: Fakes, issuer: Issuer, tmp_path: Path) -> Settings:
    path = issuer.integrations_file(
        tmp_path / "integrations.toml", fakes.generic.base_url, fakes.callback
    )
    return settings.model_copy(
        update={
            "integrations_file": path,
            # A key prefix of its own: the cached document belongs to this test alone.
            "key_prefix": f"{settings.key_prefix}-d{uuid.uuid4().hex[:6]}",
            "discovery_retry_seconds": 0.2,
            "api_keys": (KEY,),
        }
    )


async def configuration_alerts(redis: Redis, prefix: str) -> list[dict[str, Any]]:
    return [d for t, d in await stream_events(redis, prefix) if t == "alert.configuration"]


async def test_an_unreachable_issuer_leaves_the_others_working_until_it_answers(
    settings: Settings, fakes: Fakes, issuer: Issuer, redis: Redis, tmp_path: Path
) -> None:
    configured = outage_settings(settings, fakes, issuer, tmp_path)
    config = await load_config(configured)  # no ConfigurationError: the process starts
    assert "steady" in config.integrations and "oidc" not in config.integrations
    assert set(config.integrations.unavailable) == {"oidc"}
    [alert] = await configuration_alerts(redis, configured.key_prefix)
    assert alert["integration"] == "oidc" and alert["code"] == "integration_unavailable"
    assert alert["severity"] == "error" and "HTTP 503" in alert["message"]

    runtime = await Runtime.open(config)
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
            await redis.set(f"{configured.key_prefix}:heartbeat", repr(time.time()))
            ready = await client.get("/readyz")
            body = await ready.json()
            # One vendor's outage does not make the whole service unready.
            assert ready.status == 200 and body["ready"] is True
            [entry] = body["integrations_unavailable"]
            assert entry["name"] == "oidc" and entry["issuer"] == issuer.url
            assert "HTTP 503" in entry["reason"] and entry["last_tried_at"]

            auth = {"Authorization": f"Bearer {KEY}"}
            token = await client.post("/api/connections/oidc/someone/token", headers=auth)
            problem = await token.json()
            assert token.status == 503 and problem["error"] == "integration_unavailable"
            assert "discovery failed" in problem["message"] and "last tried" in problem["message"]
            assert int(token.headers["Retry-After"]) >= 1
            deleted = await client.delete("/api/connections/oidc/someone", headers=auth)
            assert deleted.status == 503
            # The other integration answers as usual (404: no such connection).
            assert (await client.get("/api/connections/steady/x", headers=auth)).status == 404
            with pytest.raises(IntegrationUnavailableError, match="discovery failed"):
                await runtime.exchange.start_authorization("oidc", "someone", time.time())

            asked = issuer.asked
            issuer.up = True

            async def available() -> bool:
                return "oidc" in runtime.config.integrations

            await wait_until(available, timeout=10, what="the background discovery retry")
            assert issuer.asked > asked
            assert (await (await client.get("/readyz")).json())["integrations_unavailable"] == []
            request = await runtime.exchange.start_authorization("oidc", "someone", time.time())
            assert request.url.startswith(f"{issuer.url}/authorize?")
            assert runtime.config.integrations["oidc"].revocation_url == f"{issuer.url}/revoke"
    finally:
        await runtime.close()
    kinds = [t for t, _ in await stream_events(redis, configured.key_prefix)]
    assert kinds.count("integration.available") == 1

    # The next start finds the issuer down again and starts from the cached document.
    issuer.up = False
    again = await load_config(configured)
    assert "oidc" in again.integrations and not again.integrations.unavailable
    assert again.integrations["oidc"].token_url == f"{issuer.url}/token"
    cached = (await configuration_alerts(redis, configured.key_prefix))[-1]
    assert cached["code"] == "discovery_cached" and cached["severity"] == "warning"


async def test_a_connect_link_of_an_unavailable_integration_is_a_503_page_and_stays_usable(
    settings: Settings, fakes: Fakes, issuer: Issuer, tmp_path: Path
) -> None:
    configured = outage_settings(settings, fakes, issuer, tmp_path)
    runtime = await Runtime.open(await load_config(configured))
    sessions = ConnectSessions(runtime.redis, runtime.keys, 600)
    token, _ = await sessions.create(SessionRequest("oidc", "user-7", None, None), time.time())
    link = f"/connect/oidc?session={token}"
    try:
        async with TestClient(TestServer(create_app(runtime), host="127.0.0.1")) as client:
            refused = await client.get(link, allow_redirects=False)
            text = await refused.text()
            assert refused.status == 503 and refused.content_type == "text/html", text
            assert int(refused.headers["Retry-After"]) >= 1
            assert "sign-in service of oidc can&#x27;t be reached right now" in text
            assert "open it again" in text

            issuer.up = True

            async def available() -> bool:
                return "oidc" in runtime.config.integrations

            await wait_until(available, timeout=10, what="the background discovery retry")
            # The refused visit did not spend the link.
            sent = await client.get(link, allow_redirects=False)
            assert sent.status == 302, await sent.text()
            assert sent.headers["Location"].startswith(f"{issuer.url}/authorize?")
    finally:
        await runtime.close()


async def test_a_start_from_the_cached_document_fetches_the_live_one_until_it_answers(
    settings: Settings, fakes: Fakes, issuer: Issuer, redis: Redis, tmp_path: Path
) -> None:
    """Before: a cache hit marked the integration available and nothing fetched the live
    document again, so it ran on stale endpoints until a restart."""
    configured = outage_settings(settings, fakes, issuer, tmp_path)
    issuer.up = True
    await load_config(configured)  # caches the document
    issuer.up, issuer.revocation_path = False, "/oauth/revoke"  # moved while it was down
    config = await load_config(configured)
    assert config.integrations["oidc"].revocation_url == f"{issuer.url}/revoke"  # cached
    assert set(config.integrations.stale) == {"oidc"}
    runtime = await Runtime.open(config)
    try:
        asked = issuer.asked

        async def asked_again() -> bool:
            return issuer.asked > asked + 1

        await wait_until(asked_again, timeout=10, what="the live document to be asked for")
        assert config.integrations["oidc"].revocation_url == f"{issuer.url}/revoke"
        issuer.up = True

        async def rebuilt() -> bool:
            oidc = runtime.config.integrations.get("oidc")
            return oidc is not None and oidc.revocation_url == f"{issuer.url}/oauth/revoke"

        await wait_until(rebuilt, timeout=10, what="the live document to rebuild oidc")
        assert not runtime.config.integrations.stale
        keys = Keys(configured.key_prefix, configured.redis_shards)
        cached = await redis.hget(keys.discovery(issuer.url), "document")
        assert cached is not None and "/oauth/revoke" in cached  # re-cached
    finally:
        await runtime.close()


async def test_a_worker_starts_while_an_issuer_is_down_and_retries_it(
    settings: Settings, fakes: Fakes, issuer: Issuer, redis: Redis, tmp_path: Path
) -> None:
    configured = outage_settings(settings, fakes, issuer, tmp_path)
    keys = Keys(configured.key_prefix, configured.redis_shards)
    # Due while oidc is unavailable: counted and logged as that, not as "not configured".
    await put_on_schedule(redis, keys, "oidc", "due-while-down", time.time())
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = start_worker(configured, tmp_path, log, f"outage-{uuid.uuid4().hex[:6]}")
        app = client_app(configured)
        try:

            async def answers() -> bool:
                if process.poll() is not None:
                    raise AssertionError(log_path.read_text(errors="replace")[-3000:])
                return bool(await asyncio.to_thread(app.control.ping, timeout=0.5))

            await wait_until(answers, timeout=60, what="the worker to answer ping")
            text = log_path.read_text(errors="replace")
            assert "refusing to start" not in text
            assert "integration oidc unavailable" in text

            async def counted() -> bool:
                result = app.send_task("tokenlife.refresh_due", ignore_result=False)
                await asyncio.to_thread(result.get, timeout=30)
                field = "refresh:unknown:integration_unavailable"
                return await redis.hget(keys.counters, field) is not None

            await wait_until(counted, timeout=30, what="the due connection's outcome")
            text = log_path.read_text(errors="replace")
            assert "due-while-down: integration 'oidc' is unavailable" in text
            assert "not configured" not in text

            issuer.up = True
            asked = issuer.asked

            async def retried() -> bool:
                # A worker process retries while it runs a task: what beat's ticks do.
                result = app.send_task("tokenlife.refresh_due", ignore_result=False)
                await asyncio.to_thread(result.get, timeout=30)
                return issuer.asked > asked

            await wait_until(retried, timeout=30, what="the worker's discovery retry")
        finally:
            stop_worker(process)
            app.close()


async def save(runtime: Runtime, integration: str, connection_id: str, refresh: str) -> None:
    await runtime.tokens.save(
        integration=integration, connection_id=connection_id, provider="custom",
        tokens=TokenSet(access_token="access-" + uuid.uuid4().hex, token_type="Bearer",
                        refresh_token=refresh, expires_at=time.time() + 3600,
                        lifetime_seconds=3600, lifetime_source="expires_in",
                        granted_scopes=None),
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=(),
        next_check_at=None, now=time.time(),
    )  # fmt: skip


async def test_delete_revokes_at_the_discovered_endpoint_or_says_why_not(
    settings: Settings, fakes: Fakes, issuer: Issuer, tmp_path: Path
) -> None:
    issuer.up = True
    runtime = await Runtime.open(
        await load_config(outage_settings(settings, fakes, issuer, tmp_path))
    )
    try:
        refresh = "refresh-" + uuid.uuid4().hex
        await save(runtime, "oidc", "revoke-me", refresh)
        result = await runtime.removal.delete("oidc", "revoke-me", time.time())
        assert result == {
            "deleted": True, "revoked": True, "revocation_supported": True,
            "revocation_reason": None, "revocation_error": None,
        }  # fmt: skip
        assert issuer.revoked == [refresh]

        # No revocation endpoint anywhere: `revoked` false never reads as success.
        await save(runtime, "steady", "keep-me", "refresh-" + uuid.uuid4().hex)
        result = await runtime.removal.delete("steady", "keep-me", time.time())
        assert result["revoked"] is False and result["revocation_supported"] is False
        assert "no revocation endpoint" in result["revocation_reason"]
        assert result["revocation_error"] is None
    finally:
        await runtime.close()


def test_tokenlife_api_serves_while_an_issuer_is_down_and_names_a_bad_file(
    settings: Settings, fakes: Fakes, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = Issuer(url=f"http://127.0.0.1:{dead}")
    path = down.integrations_file(tmp_path / "down.toml", fakes.generic.base_url, fakes.callback)
    env = {**worker_environment(settings), "TOKENLIFE_INTEGRATIONS_FILE": str(path),
           "TOKENLIFE_KEY_PREFIX": f"{settings.key_prefix}-api{uuid.uuid4().hex[:4]}"}  # fmt: skip
    log = tmp_path / "api.log"

    def readiness() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as exc:  # 503: no beat in this test
            return dict(json.load(exc))
        except OSError:
            return None

    with log.open("wb") as sink:
        argv = [sys.executable, "-m", "tokenlife.cli", "api", "--port", str(port)]
        process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=sink)  # fmt: skip
        try:
            wait_for(lambda: process.poll() is not None or readiness() is not None,
                     timeout=30, what="tokenlife api to answer")  # fmt: skip
            body = readiness()
            assert body is not None, log.read_text()
            assert [e["name"] for e in body["integrations_unavailable"]] == ["oidc"]
        finally:
            process.terminate()
            process.wait(timeout=10)

    path.write_text("[integrations.broken]\nprovider = 'nope'\n")
    result = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode != 0 and "[integrations.broken]: client_id" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_process_takes_the_document_another_process_fetched(
    settings: Settings, fakes: Fakes, issuer: Issuer, tmp_path: Path
) -> None:
    quick = outage_settings(settings, fakes, issuer, tmp_path)
    slow = quick.model_copy(update={"discovery_retry_seconds": 3600})
    first = await Runtime.open(await load_config(quick))
    second = await Runtime.open(await load_config(slow))
    try:
        assert "oidc" not in second.config.integrations
        issuer.up = True

        async def fetched() -> bool:
            return "oidc" in first.config.integrations

        await wait_until(fetched, timeout=10, what="the first process's retry")
        asked = issuer.asked
        await second.adopt_cached_discovery()  # what a worker process does before a task
        assert "oidc" in second.config.integrations
        assert issuer.asked == asked  # from the cache, not from the issuer
    finally:
        await first.close()
        await second.close()
