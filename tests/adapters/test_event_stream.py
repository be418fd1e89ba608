"""EventStream against the real Redis: entries of `type` and JSON `data` in the stream of
their connection's shard, a capped length."""

from __future__ import annotations

import json
import re
import uuid
from typing import cast

from redis.asyncio import Redis

from tokenlife.adapters.event_consumer import split_id
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys, shard_tags
from tokenlife.core.events import CONNECTION_AUTHORIZED, Event, make_event
from tokenlife.settings import Settings

NOW = 1_700_000_000.0

Entries = list[tuple[str, dict[str, str]]]


def event(number: int = 0, connection_id: str | None = None) -> Event:
    return make_event(
        CONNECTION_AUTHORIZED,
        event_id=str(uuid.uuid4()),
        now=NOW + number,
        integration="google",
        connection_id=connection_id or f"conn-{uuid.uuid4().hex[:12]}",
        provider="google",
        number=number,
    )


async def stream_lengths(redis: Redis, keys: Keys) -> dict[int, int]:
    """How many entries each shard's stream holds, where it holds any."""
    lengths = {shard: await redis.xlen(keys.events(shard)) for shard in keys.all_shards}
    return {shard: length for shard, length in lengths.items() if length}


async def test_publish_writes_type_and_json_data_to_the_events_stream(
    redis: Redis, settings: Settings
) -> None:
    # A stream of its own: the run's shared stream holds only events the code emitted,
    # which tests/test_event_schemas.py validates.
    keys = Keys(f"{settings.key_prefix}-publish-{uuid.uuid4().hex[:8]}")
    stream = EventStream(redis, keys, settings.events_max_length)
    published = event()

    entry_id = await stream.publish(published)

    # In the stream of its connection's shard, and its id says which.
    shard = keys.shard("google", published.data["connection_id"])
    assert keys.events(shard) == f"{keys.prefix}:{{{shard_tags(keys.shards)[shard]}}}:events"
    assert re.fullmatch(r"\d+-\d+/\d+", entry_id), entry_id
    stream_id, of = split_id(entry_id)
    assert of == shard
    assert await stream_lengths(redis, keys) == {shard: 1}
    entries = cast(Entries, await redis.xrange(keys.events(shard), min=stream_id, max=stream_id))
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


async def test_an_event_about_no_one_connection_goes_to_shard_zero(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(f"{settings.key_prefix}-publish-{uuid.uuid4().hex[:8]}")
    stream = EventStream(redis, keys, settings.events_max_length)
    try:
        # Another connection's event lands in its own shard, beside it or not.
        cid = next(f"conn-{n}" for n in range(100) if keys.shard("google", f"conn-{n}") == 7)
        about_one = await stream.emit(CONNECTION_AUTHORIZED, "google", cid, NOW)
        about_none = await stream.emit("alert.configuration", "google", None, NOW)

        assert split_id(about_one)[1] == 7
        assert split_id(about_none)[1] == 0
        assert await stream_lengths(redis, keys) == {0: 1, 7: 1}
    finally:
        await redis.delete(*(keys.events(shard) for shard in keys.all_shards))


async def test_approximate_trimming_keeps_the_stream_bounded(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(f"{settings.key_prefix}-trim-{uuid.uuid4().hex[:8]}")
    stream = EventStream(redis, keys, max_length=1000)
    # One connection's events: one shard's stream, the cap is per stream.
    cid = f"conn-{uuid.uuid4().hex[:12]}"
    events = keys.events(keys.shard("google", cid))
    try:
        for number in range(3000):
            await stream.publish(event(number, cid))

        length = await redis.xlen(events)
        # `~` trims whole macro-nodes (stream-node-max-entries, 100 by default), so the
        # stream may hold a little more than the cap, never less.
        assert 1000 <= length < 1500, length
        assert await stream_lengths(redis, keys) == {keys.shard("google", cid): length}
        newest = cast(Entries, await redis.xrevrange(events, count=1))
        assert json.loads(newest[0][1]["data"])["number"] == 2999
    finally:
        await redis.delete(events)
