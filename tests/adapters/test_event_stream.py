"""EventStream against the real Redis: entries of `type` and JSON `data`, a capped length."""

from __future__ import annotations

import json
import re
import uuid
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.core.events import CONNECTION_AUTHORIZED, Event, make_event
from tokenlife.settings import Settings

NOW = 1_700_000_000.0

Entries = list[tuple[str, dict[str, str]]]


def event(number: int = 0) -> Event:
    return make_event(
        CONNECTION_AUTHORIZED,
        event_id=str(uuid.uuid4()),
        now=NOW + number,
        integration="google",
        connection_id=f"conn-{uuid.uuid4().hex[:12]}",
        provider="google",
        number=number,
    )


async def test_publish_writes_type_and_json_data_to_the_events_stream(
    redis: Redis, settings: Settings
) -> None:
    # A stream of its own: the run's shared stream holds only events the code emitted,
    # which tests/test_event_schemas.py validates.
    keys = Keys(f"{settings.key_prefix}-publish-{uuid.uuid4().hex[:8]}")
    stream = EventStream(redis, keys, settings.events_max_length)
    published = event()

    entry_id = await stream.publish(published)

    assert keys.events == f"{keys.prefix}:events"
    assert re.fullmatch(r"\d+-\d+", entry_id), entry_id
    entries = cast(Entries, await redis.xrange(keys.events, min=entry_id, max=entry_id))
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields.keys() == {"type", "data"}
    assert fields["type"] == "connection.authorized"
    data = json.loads(fields["data"])
    assert data == published.data
    assert data["event_id"] == published.data["event_id"]
    assert data["occurred_at"] == "2023-11-14T22:13:20Z"
    assert data["integration"] == "google"
    assert data["connection_id"] == published.data["connection_id"]


async def test_approximate_trimming_keeps_the_stream_bounded(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(f"{settings.key_prefix}-trim-{uuid.uuid4().hex[:8]}")
    stream = EventStream(redis, keys, max_length=1000)
    try:
        for number in range(3000):
            await stream.publish(event(number))

        length = await redis.xlen(keys.events)
        # `~` trims whole macro-nodes (stream-node-max-entries, 100 by default), so the
        # stream may hold a little more than the cap, never less.
        assert 1000 <= length < 1500, length
        newest = cast(Entries, await redis.xrevrange(keys.events, count=1))
        assert json.loads(newest[0][1]["data"])["number"] == 2999
    finally:
        await redis.delete(keys.events)
