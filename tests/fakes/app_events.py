"""An app's event handlers, as a test runs them in a process of their own:
`tokenlife events consume tests.fakes.app_events:handlers`.

Each handler keeps what it saw in Redis (`{prefix}:test-events:*`, the TOKENLIFE_KEY_PREFIX
the test gives the process). An event whose data says `"hold": true` is held by its handler
until the test sets the release key, so a test can stop or kill the process mid-handling.
`token.refreshed` goes to a task of the app's own Celery project (tests/fakes/app_celery.py).
"""

from __future__ import annotations

import os
import time

import redis
import redis.asyncio

from tests.fakes.app_celery import record_event
from tokenlife.event_handlers import Event, EventHandlers
from tokenlife.settings import load_settings

settings = load_settings()
handlers = EventHandlers(
    os.environ.get("TEST_EVENTS_GROUP", "test-app"),
    start="0",
    max_deliveries=3,
    claim_idle_seconds=float(os.environ.get("TEST_EVENTS_CLAIM_IDLE_SECONDS", "60")),
)


def key(prefix: str, what: str) -> str:
    """started, done (connection ids, in the order handled), alerts, deleted, release."""
    return f"{prefix}:test-events:{what}"


def _key(what: str) -> str:
    return key(settings.key_prefix, what)


@handlers.on("connection.authorized")
def authorized(event: Event) -> None:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        client.rpush(_key("started"), str(event.connection_id))
        deadline = time.monotonic() + 60
        while event.data.get("hold") and not client.exists(_key("release")):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never released the held event")
            time.sleep(0.05)
        client.rpush(_key("done"), str(event.connection_id))
    finally:
        client.close()


@handlers.on("alert.*")
async def alerted(event: Event) -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        await client.rpush(_key("alerts"), event.type)
    finally:
        await client.aclose()


@handlers.on("connection.deleted")
def deleted(event: Event) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.rpush(_key("deleted"), f"{event.integration}/{event.connection_id}")
    finally:
        client.close()


@handlers.on("test.poison")
def poison(event: Event) -> None:
    raise RuntimeError(f"this handler fails for every event ({event.type})")


handlers.on("token.refreshed", record_event.s(label="refreshed"))
