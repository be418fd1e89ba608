"""The `tokenlife` command against the real Redis and the fake providers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, connect, worker_environment
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


def tokenlife(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", *args],
        env=worker_environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_authorize_url_prints_a_url_and_stores_the_pending_state(
    settings: Settings, fakes: Fakes, redis: Redis
) -> None:
    result = tokenlife(settings, "authorize-url", "google", "user-cli")

    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(fakes.google.base_url + "/o/oauth2/v2/auth?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    raw = await redis.get(f"{settings.key_prefix}:pending:{query['state']}")
    assert raw is not None
    pending = json.loads(raw)
    assert pending["connection_id"] == "user-cli"
    assert pending["params"]["access_type"] == "offline"
    assert pending["params"]["state"] == query["state"]  # exactly what was sent


def test_authorize_url_for_an_unknown_integration_says_so(settings: Settings) -> None:
    result = tokenlife(settings, "authorize-url", "nope", "user-1")
    assert result.returncode == 1
    assert "no integration named 'nope'" in result.stderr


def test_authorize_url_rejects_a_bad_connection_id(settings: Settings) -> None:
    result = tokenlife(settings, "authorize-url", "google", "has space")
    assert result.returncode == 1
    assert "invalid connection id" in result.stderr


async def test_connections_show_json_prints_metadata_and_no_token(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, settings: Settings
) -> None:
    cid = "user-" + uuid.uuid4().hex[:12]
    await connect(tl, worker, "google", cid, login_hint=cid)

    result = tokenlife(settings, "connections", "show", "google", cid, "--json")

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] == "active" and shown["provider"] == "google"
    assert shown["has_refresh_token"] is True
    assert shown["expires_at"].endswith("Z")
    for secret in fakes.google.issued_secrets:
        assert secret not in result.stdout


def test_connections_show_unknown_connection_fails_cleanly(settings: Settings) -> None:
    result = tokenlife(settings, "connections", "show", "google", "nobody")
    assert result.returncode == 1
    assert "no connection 'nobody'" in result.stderr
