"""The alert a connection shows, against the real Redis and a fake provider: a later, lesser
alert never hides why the connection won't stay connected, and what resolves it clears it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import events_for
from tokenlife.adapters.event_stream import new_event
from tokenlife.core import events
from tokenlife.runtime import Runtime
from tokenlife.services.exchange import ExchangeService
from tokenlife.services.expiry import ExpiryWatch
from tokenlife.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A prefix of its own: the hand-made events here carry only what the rule reads, and
    tests/test_event_schemas.py checks every event in the session's stream."""
    return settings.model_copy(update={"key_prefix": f"{settings.key_prefix}-alert-{new_id()}"})


async def connect(service: ExchangeService, integration: str, cid: str) -> dict[str, Any]:
    callback = await consent(service, integration, cid, time.time())
    return await service.exchange_code(
        state=callback["state"], code=callback["code"], error=None, error_description=None,
        attempt=attempt(), now=time.time(), iss=None,
    )  # fmt: skip


async def test_the_expiry_warning_keeps_the_missing_refresh_token_and_its_fixes(
    runtime: Runtime, redis: Redis, settings: Settings
) -> None:
    service, cid = exchange_service(runtime), new_id()
    # "generic" requests no offline_access: no refresh token, alert.refresh_token_missing.
    result = await connect(service, "generic", cid)
    assert result["outcome"] == "refresh_token_missing" and result["fixes"]
    watch = ExpiryWatch(store=runtime.tokens, lead_seconds=[24 * 3600.0])
    connection = await runtime.tokens.get("generic", cid)
    expires_at = connection.expires_at
    assert expires_at is not None

    # Half a second later the expiry warning goes out (it has no fixes to name).
    assert await watch.check(connection, connection.updated_at + 0.5) == "alerted"

    shown = (await runtime.tokens.get("generic", cid)).last_alert
    assert shown is not None
    assert shown["type"] == events.REFRESH_TOKEN_MISSING
    assert shown["fixes"] == result["fixes"]
    published = [kind for kind, _ in await events_for(redis, settings, cid)]
    assert published[-1] == events.ACCESS_TOKEN_EXPIRING  # still sent, only not shown

    # The lapse is graver: it is shown, and the cause's fixes follow its own.
    connection = await runtime.tokens.get("generic", cid)
    assert await watch.check(connection, expires_at + 1) == "lapsed"
    shown = (await runtime.tokens.get("generic", cid)).last_alert
    assert shown is not None
    assert shown["type"] == events.REAUTHORIZATION_REQUIRED
    assert shown["fixes"][0].startswith("Ask the user to connect again.")
    assert shown["fixes"][1:] == result["fixes"]


async def test_a_refresh_that_worked_clears_the_alert_and_a_new_one_shows_again(
    runtime: Runtime,
) -> None:
    service, cid = exchange_service(runtime), new_id()
    await connect(service, "google", cid)
    store, now = runtime.tokens, time.time()

    failing = new_event(events.REFRESH_FAILING, "google", cid, now, error="timeout")
    connection = await store.get("google", cid)
    assert connection.last_alert is None
    assert await store.update(connection, now=now, event=failing) is not None
    shown = (await store.get("google", cid)).last_alert
    assert shown == {"type": events.REFRESH_FAILING, "occurred_at": events.iso8601(now),
                     "fixes": []}  # fmt: skip

    # A write based on an older version changes nothing, the alert included.
    refreshed = new_event(events.TOKEN_REFRESHED, "google", cid, now + 1)
    assert await store.update(connection, now=now + 1, event=refreshed) is None
    assert (await store.get("google", cid)).last_alert == shown

    connection = await store.get("google", cid)
    assert await store.update(connection, now=now + 1, event=refreshed) is not None
    assert (await store.get("google", cid)).last_alert is None

    again = new_event(events.REFRESH_FAILING, "google", cid, now + 2, error="timeout")
    connection = await store.get("google", cid)
    assert await store.update(connection, now=now + 2, event=again) is not None
    assert (await store.get("google", cid)).last_alert == {
        "type": events.REFRESH_FAILING, "occurred_at": events.iso8601(now + 2), "fixes": []
    }  # fmt: skip
