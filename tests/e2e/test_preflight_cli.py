"""`tokenlife integrations check` gates a deployment; the worker reports the same findings
as alert.configuration events when it starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, stream_events, worker_environment
from tokenlife.settings import Settings


def check(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "integrations", "check", *args],
        env={**worker_environment(settings), **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_check_exits_non_zero_and_names_each_mistake(
    settings: Settings, fakes: Fakes, tmp_path: Path
) -> None:
    path = tmp_path / "integrations.toml"
    issuer = fakes.generic.base_url
    path.write_text(f'''
[integrations.google-behind-custom]
provider = "custom"
client_id = "x"
client_secret = "y"
authorize_url = "https://accounts.google.com/o/oauth2/v2/auth"
token_url = "https://oauth2.googleapis.com/token"
redirect_uri = "http://app.example.com/callback"

[integrations.secret-missing]
provider = "google"
client_id = "x"
client_secret_env = "TOKENLIFE_TEST_SURELY_UNSET"
redirect_uri = "https://app.example.com/callback"

[integrations.discovered]
provider = "custom"
issuer = "{issuer}"
client_id = "x"
client_secret = "y"
scopes = ["openid", "offline_access"]
extra_authorization_params = {{ prompt = "consent" }}
redirect_uri = "https://app.example.com/callback"

[integrations.fine]
provider = "microsoft"
client_id = "x"
client_secret = "y"
redirect_uri = "https://app.example.com/callback"
''')
    result = check(settings, "--json", TOKENLIFE_INTEGRATIONS_FILE=str(path))

    assert result.returncode == 1, result.stderr
    found = {(f["integration"], f["code"]) for f in json.loads(result.stdout)}
    assert found == {
        ("google-behind-custom", "use_catalogued_provider"),
        ("google-behind-custom", "refresh_token_requirement_missing"),
        ("google-behind-custom", "redirect_uri_not_https"),
        ("secret-missing", "client_secret_env_unset"),
    }


def test_check_passes_a_clean_configuration(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "integrations.toml"
    path.write_text("""
[integrations.outlook]
provider = "microsoft"
tenant = "contoso.onmicrosoft.com"
client_id = "x"
client_secret = "y"
scopes = ["openid", "https://graph.microsoft.com/Mail.Read"]
redirect_uri = "https://app.example.com/callback"
""")
    # --strict too: with no finding at all, nothing fails.
    result = check(settings, "--strict", TOKENLIFE_INTEGRATIONS_FILE=str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s), 0 error(s)" in result.stdout


def test_the_custom_default_prompt_with_offline_access_is_an_error(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "integrations.toml"
    path.write_text("""
[integrations.oidc]
provider = "custom"
authorize_url = "https://idp.example.com/authorize"
token_url = "https://idp.example.com/token"
client_id = "x"
client_secret = "y"
scopes = ["openid", "offline_access"]
redirect_uri = "https://app.example.com/callback"
""")
    result = check(settings, TOKENLIFE_INTEGRATIONS_FILE=str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR    oidc: The integration requests offline_access with prompt=select_account" in (
        result.stdout
    )
    assert 'fix: Set extra_authorization_params.prompt = "consent"' in result.stdout


def test_strict_fails_on_warnings_too(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "integrations.toml"
    # Only a warning: OIDC advice to request offline_access.
    path.write_text("""
[integrations.oidc]
provider = "custom"
authorize_url = "https://idp.example.com/authorize"
token_url = "https://idp.example.com/token"
client_id = "x"
client_secret = "y"
scopes = ["openid"]
extra_authorization_params = { prompt = "consent" }
redirect_uri = "https://app.example.com/callback"
""")
    lenient = check(settings, TOKENLIFE_INTEGRATIONS_FILE=str(path))
    strict = check(settings, "--strict", "--json", TOKENLIFE_INTEGRATIONS_FILE=str(path))
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "WARNING  oidc:" in lenient.stdout
    assert "1 finding(s), 0 error(s)" in lenient.stdout
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert [(f["severity"], f["code"]) for f in json.loads(strict.stdout)] == [
        ("warning", "refresh_token_requirement_missing")
    ]


async def test_the_worker_reports_findings_as_events_at_start(
    worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    entries = await stream_events(redis, settings.key_prefix)
    configuration = [data for kind, data in entries if kind == "alert.configuration"]
    found = {(d["integration"], d["code"]) for d in configuration}
    # The test configuration has these mistakes on purpose (see tests/support.py).
    assert ("google-as-custom", "use_catalogued_provider") in found
    assert ("microsoft-as-custom", "use_catalogued_provider") in found
    assert all(d["connection_id"] is None and d["fix"] for d in configuration)
