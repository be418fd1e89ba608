"""The worker's start-up preflight against the real Redis: a client secret expiring within
30 days is logged, not raised as alert.configuration at every start (beat's
alert.client_secret_expiring tells on-call once per lead); one past its date is raised."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from tests.support import stream_events
from tokenlife.core import events
from tokenlife.preflight import report_at_start
from tokenlife.providers import load_presets
from tokenlife.settings import Settings

EXPIRES = datetime(2027, 6, 30, tzinfo=UTC).timestamp()
TABLE = """
[integrations.{name}]
provider = "microsoft"
client_id = "client"
client_secret = "secret"
redirect_uri = "https://app.example.com/oauth/callback"
client_secret_expires_at = {date}
"""


async def test_an_expiring_secret_is_logged_and_an_expired_one_raised(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "integrations.toml"
    path.write_text(TABLE.format(name="soon", date="2027-06-30")
                    + TABLE.format(name="past", date="2027-06-01"))  # fmt: skip
    configured = settings.model_copy(update={"integrations_file": path})
    before = len(await stream_events(redis, settings.key_prefix))
    findings = await report_at_start(configured, load_presets(), {}, EXPIRES - 10 * 86400)
    codes = {(f.integration, f.code) for f in findings}
    assert {("soon", "client_secret_expiring"), ("past", "client_secret_expired")} <= codes
    raised = [(d["integration"], d["code"])
              for t, d in (await stream_events(redis, settings.key_prefix))[before:]
              if t == events.CONFIGURATION]  # fmt: skip
    assert ("past", "client_secret_expired") in raised
    assert ("soon", "client_secret_expiring") not in raised
