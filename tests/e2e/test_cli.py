"""The `tokenlife` command against the real Redis and the fake providers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, connect, worker_environment
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_store import TokenStore
from tokenlife.cli import main
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
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
    raw = await redis.get(Keys(settings.key_prefix, settings.redis_shards).pending(query["state"]))
    assert raw is not None
    pending = json.loads(raw)
    assert pending["connection_id"] == "user-cli"
    assert pending["params"]["access_type"] == "offline"
    assert pending["params"]["state"] == query["state"]  # exactly what was sent


async def test_authorize_url_for_an_unknown_integration_exits_3(settings: Settings) -> None:
    result = await in_process(settings, "authorize-url", "nope", "user-1")
    assert result.exit_code == 3
    assert "no integration named 'nope'" in result.stderr


async def test_authorize_url_rejects_a_bad_connection_id_as_usage(settings: Settings) -> None:
    result = await in_process(settings, "authorize-url", "google", "has space")
    assert result.exit_code == 2
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


async def test_connections_show_unknown_connection_exits_3(settings: Settings) -> None:
    result = await in_process(settings, "connections", "show", "google", "nobody")
    assert result.exit_code == 3
    assert "no connection 'nobody'" in result.stderr


async def in_process(settings: Settings, *args: str, **extra: str) -> Result:
    """The command run in this process (on a thread: it runs its own event loop), with
    the environment a deployment gives it."""
    env = {k: v for k, v in worker_environment(settings).items() if k.startswith("TOKENLIFE_")}
    env.update(extra)
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


def secrets_of(fakes: Fakes) -> list[str]:
    return [*fakes.google.issued_secrets, *fakes.generic.issued_secrets]


async def test_list_refresh_and_delete_with_the_exit_codes_scripts_rely_on(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid, stuck = ("cli-" + uuid.uuid4().hex[:10] for _ in range(2))
    await connect(tl, worker, "google", cid, login_hint=cid)
    await connect(tl, worker, "google", stuck, login_hint=stuck)
    stuck_fields = {"status": "reauthorization_required", "last_error": "invalid_grant"}
    stuck_key = Keys(settings.key_prefix, settings.redis_shards).connection("google", stuck)
    await redis.hset(stuck_key, mapping=stuck_fields)  # type: ignore[arg-type]

    listed = await in_process(settings, "connections", "list", "--integration", "google", "--json")
    assert listed.exit_code == 0, listed.output
    ids = {c["connection_id"]: c["status"] for c in json.loads(listed.stdout)}
    assert ids[cid] == "active" and ids[stuck] == "reauthorization_required"
    only = await in_process(settings, "connections", "list", "--status",
                            "reauthorization_required", "--json")  # fmt: skip
    assert stuck in {c["connection_id"] for c in json.loads(only.stdout)}
    assert cid not in {c["connection_id"] for c in json.loads(only.stdout)}
    limited = await in_process(settings, "connections", "list", "--limit", "1", "--json")
    assert len(json.loads(limited.stdout)) == 1

    refreshed = await in_process(settings, "connections", "refresh", "google", cid, "--json")
    assert refreshed.exit_code == 0, refreshed.output
    body = json.loads(refreshed.stdout)
    assert body["outcome"] == "refreshed" and body["connection"]["version"] == 2
    needs_user = await in_process(settings, "connections", "refresh", "google", stuck)
    assert needs_user.exit_code == 4 and "needs re-authorization" in needs_user.stderr

    deleted = await in_process(settings, "connections", "delete", "google", cid, "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["revoked"] is True
    gone = await in_process(settings, "connections", "refresh", "google", cid)
    assert gone.exit_code == 3 and "no connection" in gone.stderr
    for result in (listed, only, refreshed, needs_user, deleted):
        for secret in secrets_of(fakes):
            assert secret not in result.output


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("connections", "list", "--integration", "nope"), 3, "no integration named 'nope'"),
        (("connections", "list", "--status", "sleepy"), 2, "Invalid value for '--status'"),
        (("connections", "delete", "google", "nobody"), 3, "no connection 'nobody'"),
        (("connections", "refresh", "nope", "x"), 3, "no integration named 'nope'"),
        (("connections", "show", "nope", "abc"), 3, "no integration named 'nope'"),
        (("connections", "show", "google", "a b"), 2, "invalid connection id"),
        (("connections", "refresh", "google", "a/b"), 2, "invalid connection id"),
        (("connections", "delete", "google", "a" * 300), 2, "invalid connection id"),
    ],
)
async def test_errors_exit_with_their_documented_code(
    settings: Settings, args: tuple[str, ...], code: int, says: str
) -> None:
    result = await in_process(settings, *args)
    assert result.exit_code == code, result.output
    assert says in result.stderr


async def test_a_malformed_redis_url_is_a_settings_error_without_the_password(
    settings: Settings,
) -> None:
    bad = "redis://:hun/ter2pw@127.0.0.1:6379/0"  # an unencoded '/' in the password
    result = await in_process(settings, "connections", "list", TOKENLIFE_REDIS_URL=bad)
    assert result.exit_code == 1, result.output
    assert "TOKENLIFE_REDIS_URL: not a valid URL" in result.stderr
    assert "Traceback" not in result.output and "ter2pw" not in result.output


async def test_redis_unavailable_exits_5_without_the_url(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": "redis://:hunter2-password@127.0.0.1:9/0"})
    result = await in_process(
        dead, "connections", "show", "google", "x", TOKENLIFE_REDIS_RETRIES="0"
    )
    assert result.exit_code == 5, result.output
    assert "Redis unavailable" in result.stderr and "hunter2" not in result.output


def test_version_and_help_of_every_command() -> None:
    runner = CliRunner()
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("tokenlife ")
    assert version.stdout.split()[1][0].isdigit()
    groups = {"connections": ["list", "show", "refresh", "delete"],
              "keys": ["generate", "rotate", "status"]}  # fmt: skip
    for group, commands in groups.items():
        for command in [None, *commands]:
            argv = [group, *([command] if command else []), "--help"]
            shown = runner.invoke(main, argv)
            assert shown.exit_code == 0, argv
            assert "Usage: " in shown.stdout and len(shown.stdout.splitlines()) > 4, argv


async def test_keys_rotate_reseals_under_the_first_key_and_prints_lines_off_a_terminal(
    settings: Settings, redis: Redis
) -> None:
    new, old = (Fernet.generate_key().decode() for _ in range(2))
    prefix = "cli-keys-" + uuid.uuid4().hex[:8]
    store = TokenStore(redis, Keys(prefix), Cipher([old]))
    tokens = TokenSet(
        access_token="access-" + uuid.uuid4().hex, token_type="Bearer",
        refresh_token="refresh-" + uuid.uuid4().hex, expires_at=None, lifetime_seconds=None,
        lifetime_source=None, granted_scopes=None,
    )  # fmt: skip
    await store.save(
        integration="it", connection_id="one", provider="custom", tokens=tokens,
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=(),
        next_check_at=None, now=1.0,
    )  # fmt: skip
    env = {"TOKENLIFE_KEY_PREFIX": prefix, "TOKENLIFE_ENCRYPTION_KEYS": f"{new},{old}"}

    rotated = await in_process(settings, "keys", "rotate", "--json", **env)

    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout) == {
        "records": 1, "records_by_kind": {"connection": 1}, "by_key": {"1": 1, "2": 0},
        "on_old_keys": 0, "undecryptable": 0, "unversioned": 0, "resealed": 1,
    }  # fmt: skip
    assert "tokenlife keys: 1 record(s) done" in rotated.stderr
    assert await TokenStore(redis, Keys(prefix), Cipher([new])).tokens("it", "one") == tokens
    env["TOKENLIFE_ENCRYPTION_KEYS"] = new  # the old key removed
    status = await in_process(settings, "keys", "status", **env)
    assert status.exit_code == 0 and "key #1 (encrypts): 1" in status.stdout

    # A record without its version is never re-sealed, but it is counted: exit 6, and
    # the line says which and what to do.
    await store.save(
        integration="it", connection_id="broken", provider="custom", tokens=tokens,
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=(),
        next_check_at=None, now=1.0,
    )  # fmt: skip
    await redis.hdel(Keys(prefix).connection("it", "broken"), "version")
    env["TOKENLIFE_ENCRYPTION_KEYS"] = f"{new},{old}"
    again = await in_process(settings, "keys", "rotate", **env)
    assert again.exit_code == 6, again.output
    assert "still need an old key: 1" in again.stdout and "re-encrypted now: 0" in again.stdout
    assert "1 connection record(s) have no version field" in again.stderr
    assert "tokenlife connections delete" in again.stderr and "it/broken" in again.stderr
