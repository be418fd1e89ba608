"""docker-compose.yml, run: every service's command and environment as host processes
(host_stack.py says what stands in for Docker), two workers, beat and the API; then a
user connects through the API's connect flow, beat's schedule refreshes the connection
on a worker, and the API queues a refresh that a worker does. Once with Redis as the
broker and once with the `rabbitmq` profile (this machine's RabbitMQ)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import redis as sync_redis
from cryptography.fernet import Fernet

from tests.deploy import compose
from tests.deploy.host_stack import HostStack, wait_until
from tests.e2e.browser import consent
from tests.fakes.base import Reply
from tests.support import Fakes

pytestmark = pytest.mark.stack

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
USER = "stack-user"


def dot_env(api_key: str, integrations: Path, rabbitmq: bool) -> dict[str, str]:
    """.env.example with exactly the values README.md says to fill in; with the RabbitMQ
    lines uncommented. Besides those, only what points the stack at the fakes."""
    text = compose.ENV_EXAMPLE.read_text()
    values = compose.read_env_file(text)
    readme = {
        "TOKENLIFE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "TOKENLIFE_API_KEYS": api_key,
        "GOOGLE_CLIENT_SECRET": "stack-secret",
    }
    assert sorted(readme) == sorted(compose.readme_values())
    values.update(readme)
    values.update(
        # The fake Google's endpoints, with the example's secret variable.
        INTEGRATIONS_TOML=str(integrations),
        # Our own queue names on the shared RabbitMQ (the queue is named after it).
        TOKENLIFE_KEY_PREFIX=f"stack-{uuid.uuid4().hex[:8]}",
    )
    if rabbitmq:
        values.update(compose.commented_settings(text, about="RabbitMQ"))
    return values


def integrations_toml(fakes: Fakes, api_port: int) -> str:
    g = fakes.google.base_url
    return f'''[integrations.google]
provider = "google"
client_id = "stack-client"
client_secret_env = "GOOGLE_CLIENT_SECRET"
redirect_uri = "http://127.0.0.1:{api_port}/oauth/callback"
authorize_url = "{g}/o/oauth2/v2/auth"
token_url = "{g}/token"
revocation_url = "{g}/revoke"
scopes = ["openid", "https://www.googleapis.com/auth/drive.readonly"]
'''


@pytest.fixture(params=["redis", "rabbitmq"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, fakes: Fakes) -> Iterator[HostStack]:
    rabbitmq = request.param == "rabbitmq"
    if rabbitmq:
        try:
            socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        except OSError:
            pytest.fail("no RabbitMQ on 127.0.0.1:5672 (guest/guest); docs/deployment.md")
    integrations = tmp_path / "integrations.toml"
    env = dot_env(secrets.token_urlsafe(32), integrations, rabbitmq)
    profiles = set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
    stack = HostStack(tmp_path, env, profiles, RABBITMQ_URL)
    integrations.write_text(integrations_toml(fakes, stack.api_port))
    callback = f"http://127.0.0.1:{stack.api_port}/oauth/callback"
    fakes.google.register("stack-client", "stack-secret", callback)
    stack.build()
    try:
        stack.start("redis")
        client = sync_redis.Redis(port=stack.redis_port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server", stack=stack)
        stack.start("worker", "beat", "api")
        yield stack
    finally:
        stack.stop()
        if rabbitmq:
            _on_rabbitmq(lambda channel: channel.queue_delete(env["TOKENLIFE_KEY_PREFIX"]))


async def test_a_connection_and_its_refreshes_go_through_the_compose_stack(
    stack: HostStack, fakes: Fakes
) -> None:
    assert {p.name for p in stack.processes} == {
        "redis", "worker-1", "worker-2", "beat-1", "api-1"
    }  # fmt: skip
    redis = sync_redis.Redis(port=stack.redis_port, decode_responses=True)
    # The compose command's persistence flags took effect.
    assert redis.config_get("appendonly") == {"appendonly": "yes"}
    assert redis.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert redis.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}

    (api,) = stack.by_service("api")
    workers = stack.by_service("worker")
    wait_until(api.healthy, timeout=30, what="the API's HEALTHCHECK", stack=stack)
    wait_until(
        lambda: all(_in_parallel([w.healthy for w in workers])),
        timeout=45, what="both workers' healthchecks (celery inspect ping)", stack=stack,
    )  # fmt: skip

    base = f"http://127.0.0.1:{stack.api_port}"
    auth = {"Authorization": f"Bearer {stack.dot_env['TOKENLIFE_API_KEYS']}"}
    connection_url = f"{base}/api/connections/google/{USER}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(
            f"{base}/api/connect-sessions",
            json={"integration": "google", "connection_id": USER},
            headers=auth,
        ) as created:
            assert created.status == 201, await created.text()
            link = (await created.json())["url"]
        async with http.get(link, allow_redirects=False) as opened:
            assert opened.status == 302, await opened.text()
            at_provider = opened.headers["Location"]
        query = await consent(at_provider, login_hint=USER)
        family = query["code"]
        # A 6 s access token: beat's schedule refreshes it within seconds.
        fakes.google.script(family, Reply(lifetime=6))
        async with http.get(f"{base}/oauth/callback?{urlencode(query)}") as landed:
            assert landed.status == 200, await landed.text()

        async def connection() -> dict[str, Any]:
            async with http.get(connection_url, headers=auth) as answer:
                return await answer.json() if answer.status == 200 else {}

        await _until(lambda: _has(connection, "status", "active"), stack, "the code exchange")
        await _until(
            lambda: _is(lambda: fakes.google.refreshes(family) >= 1), stack,
            "beat's schedule to refresh the 6 s token on a worker",
        )  # fmt: skip
        await _until(lambda: _not_none(connection, "last_refreshed_at"), stack, "the save")
        saved = (await connection())["version"]

        async with http.post(f"{connection_url}/refresh", headers=auth) as queued:
            assert queued.status == 202, await queued.text()
        await _until(
            lambda: _is(lambda: fakes.google.refreshes(family) == 2), stack,
            "the refresh the API queued",
        )  # fmt: skip
        await _until(lambda: _is_at_least(connection, "version", saved + 1), stack, "its save")
        async with http.post(f"{connection_url}/token", headers=auth) as token:
            assert token.status == 200, await token.text()
            assert fakes.google.access_users[(await token.json())["access_token"]] == USER

    if stack.profiles == {"rabbitmq"}:
        # The tasks went through RabbitMQ: the workers' queue is there (a passive
        # declare of a queue RabbitMQ does not have raises).
        prefix = stack.dot_env["TOKENLIFE_KEY_PREFIX"]
        _on_rabbitmq(lambda channel: channel.queue_declare(prefix, passive=True))
    assert not stack.exited()
    # A container's output is what `docker compose logs` ships: JSON lines only (no
    # Celery banner, no plain start-up line), docs/logging.md.
    for process in stack.processes:
        if process.name != "redis":
            text = process.log_path.read_text()
            plain = [line for line in text.splitlines() if not line.startswith("{")]
            assert text and not plain, f"{process.name}: {plain[:5]}"


def _on_rabbitmq(call: Callable[[Any], Any]) -> None:
    """`call` with a channel of this machine's RabbitMQ; a passive declare of a queue
    that does not exist raises."""
    from kombu.connection import Connection

    with Connection(RABBITMQ_URL) as connection:  # type: ignore[no-untyped-call]
        call(connection.default_channel)


def _pings(client: sync_redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except sync_redis.ConnectionError:
        return False


def _in_parallel(checks: list[Callable[[], bool]]) -> list[bool]:
    with ThreadPoolExecutor(len(checks)) as pool:
        return list(pool.map(lambda check: check(), checks))


async def _until(condition: Callable[[], Awaitable[bool]], stack: HostStack, what: str) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        if stack.exited() or time.monotonic() > deadline:
            raise AssertionError(f"waiting for {what}: {stack.exited() or 'timed out'}\n"
                                 f"{stack.logs()}")  # fmt: skip
        await asyncio.sleep(0.1)


async def _is(check: Callable[[], bool]) -> bool:
    return bool(check())


async def _has(get: Callable[[], Awaitable[dict[str, Any]]], key: str, value: str) -> bool:
    return (await get()).get(key) == value


async def _not_none(get: Callable[[], Awaitable[dict[str, Any]]], key: str) -> bool:
    return (await get()).get(key) is not None


async def _is_at_least(get: Callable[[], Awaitable[dict[str, Any]]], key: str, n: int) -> bool:
    return int((await get()).get(key) or 0) >= n
