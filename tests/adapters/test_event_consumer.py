"""tokenlife.events.subscribe against the real Redis: a consumer group with explicit ack.

Each test has a key prefix of its own, so its group reads streams no other test writes. The
events go to one stream per shard (their connection's); readers merge the shards.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from tests.support import wait_until
from tokenlife import events
from tokenlife.adapters.event_consumer import (
    EventConsumer,
    EventFollower,
    order,
    split_id,
)
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import Keys
from tokenlife.errors import UsageError
from tokenlife.settings import Settings


@pytest.fixture
async def own(settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """The run's settings with a key prefix of this test's own."""
    prefix = f"{settings.key_prefix}-ec-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"key_prefix": prefix})
    yield own
    keys = keys_of(own)
    await redis.delete(*(keys.events(shard) for shard in keys.all_shards))


def keys_of(own: Settings) -> Keys:
    return Keys(own.key_prefix, own.redis_shards)


def shard_of(entry_id: str) -> int:
    """The shard an entry id names (every id a reader hands out names one)."""
    shard = split_id(entry_id)[1]
    assert shard is not None, entry_id
    return shard


@pytest.fixture
def stream(redis: Redis, own: Settings) -> EventStream:
    return EventStream(redis, keys_of(own), own.events_max_length)


async def publish(stream: EventStream, *numbers: int, connection: str | None = None) -> list[str]:
    """Events about conn-{number} (spread over the shards), or all about `connection` (one
    shard). A millisecond apart: the merged order of two shards' events of one millisecond
    is by shard, not by when they were published."""
    ids = []
    for n in numbers:
        ids.append(await stream.emit("token.refreshed", "google", connection or f"conn-{n}",
                                     time.time(), provider="google", number=n))  # fmt: skip
        await asyncio.sleep(0.002)
    return ids


async def take(subscription: events.Subscription, n: int) -> list[events.ReceivedEvent]:
    """The next `n` events; fails after 10 s rather than waiting for ever."""
    taken: list[events.ReceivedEvent] = []
    try:
        async with asyncio.timeout(10):
            while len(taken) < n:
                taken.append(await anext(subscription))
    except TimeoutError:
        raise AssertionError(f"expected {n} events, got {len(taken)}: {taken}") from None
    return taken


async def pending_count(redis: Redis, own: Settings, group: str) -> int:
    """The group's pending entries over every shard's stream."""
    keys, total = keys_of(own), 0
    for shard in keys.all_shards:
        if await redis.exists(keys.events(shard)):
            total += int((await redis.xpending(keys.events(shard), group))["pending"])
    return total


async def test_subscribe_receives_events_published_after_subscribing(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    await publish(stream, 0)  # before the group exists: not for it

    async with events.subscribe("app", "app-1", settings=own) as subscription:
        reading = asyncio.create_task(take(subscription, 3))
        ids = await publish(stream, 1, 2, 3)
        received = await reading
        for event in received:
            await event.ack()

    assert [e.entry_id for e in received] == ids
    assert [e.type for e in received] == ["token.refreshed"] * 3
    assert [e.data["number"] for e in received] == [1, 2, 3]
    assert received[0].data["connection_id"] == "conn-1"
    assert received[0].data["event_id"] and received[0].data["occurred_at"].endswith("Z")
    assert await pending_count(redis, own, "app") == 0
    # Each shard's group has delivered up to the last of its shard's events.
    last = {shard_of(entry_id): split_id(entry_id)[0] for entry_id in ids}
    assert len(last) > 1  # spread over shards
    for shard, stream_id in last.items():
        groups = await redis.xinfo_groups(keys_of(own).events(shard))
        assert groups[0]["last-delivered-id"] == stream_id


async def test_the_group_is_created_when_missing_and_reused_when_present(
    own: Settings, stream: EventStream
) -> None:
    ids = await publish(stream, 1, 2)

    # start="0": a new group begins with every event still in the stream.
    async with events.subscribe("app", "a", settings=own, start="0") as first:
        assert [e.entry_id for e in await take(first, 2)] == ids
    # The group exists now: start is ignored, and there is no BUSYGROUP error.
    async with events.subscribe("app", "b", settings=own, start="0") as second:
        later = await publish(stream, 3)
        assert [e.entry_id for e in await take(second, 1)] == later


async def test_unacked_events_are_redelivered_to_the_same_consumer_and_acked_ones_are_not(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    async with events.subscribe("app", "app-1", settings=own) as subscription:
        ids = await publish(stream, 1, 2, 3)
        received = await take(subscription, 3)
        await received[1].ack()

    async with events.subscribe("app", "app-1", settings=own) as subscription:
        newer = await publish(stream, 4)
        again = await take(subscription, 3)
        # Pending ones first, in stream order; then the new one.
        assert [e.entry_id for e in again] == [ids[0], ids[2], newer[0]]
        assert [e.data["number"] for e in again] == [1, 3, 4]
        await subscription.ack(*(e.entry_id for e in again))

    assert await pending_count(redis, own, "app") == 0
    async with events.subscribe("app", "app-1", settings=own) as subscription:
        newest = await publish(stream, 5)
        assert [e.entry_id for e in await take(subscription, 1)] == newest


async def test_another_consumer_does_not_get_pending_events_of_the_first(
    own: Settings, stream: EventStream
) -> None:
    async with events.subscribe("app", "app-1", settings=own) as first:
        await publish(stream, 1)
        await take(first, 1)  # not acknowledged

    async with events.subscribe("app", "app-2", settings=own) as second:
        newer = await publish(stream, 2)
        assert [e.entry_id for e in await take(second, 1)] == newer


async def test_two_consumers_in_one_group_take_turns_each_event_to_one(
    own: Settings, stream: EventStream
) -> None:
    # One connection's events, so one shard's stream: `count` bounds a read per shard.
    async with (
        events.subscribe("app", "app-1", settings=own, count=1) as one,
        events.subscribe("app", "app-2", settings=own, count=1) as two,
    ):
        ids = await publish(stream, *range(6), connection="conn-one")
        got_one, got_two = [], []
        for _ in range(3):
            got_one += [e.entry_id for e in await take(one, 1)]
            got_two += [e.entry_id for e in await take(two, 1)]

    assert got_one == ids[0::2]
    assert got_two == ids[1::2]


async def test_two_consumers_reading_at_once_split_the_events(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    received: dict[str, list[str]] = {"app-1": [], "app-2": []}

    async def all_received() -> bool:
        return sum(len(v) for v in received.values()) >= len(ids)

    async def consume(subscription: events.Subscription, name: str) -> None:
        async for event in subscription:
            received[name].append(event.entry_id)
            await event.ack()

    async with (
        events.subscribe("app", "app-1", settings=own, count=3) as one,
        events.subscribe("app", "app-2", settings=own, count=3) as two,
    ):
        tasks = [
            asyncio.create_task(consume(one, "app-1")),
            asyncio.create_task(consume(two, "app-2")),
        ]
        ids: list[str] = []
        for batch in range(8):
            ids += await publish(stream, *range(batch * 5, batch * 5 + 5))
            await asyncio.sleep(0)  # let the readers run between batches
        try:
            await wait_until(all_received, timeout=10, what=f"{len(ids)} events, got {received}")
        finally:
            await cancel(tasks)

    everything = received["app-1"] + received["app-2"]
    assert sorted(everything) == sorted(ids)  # each event once: none twice, none lost
    assert not set(received["app-1"]) & set(received["app-2"])
    assert await pending_count(redis, own, "app") == 0


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    done, running = await asyncio.wait(tasks, timeout=5)
    assert not running, "a cancelled reader kept running"
    assert all(task.cancelled() for task in done), [task.exception() for task in done]


async def test_a_task_reading_events_stops_when_cancelled_even_mid_delivery(
    own: Settings, stream: EventStream
) -> None:
    # Cancelling while a command is being sent is the race that loses the cancellation
    # when a socket timeout is set (redis-py sends under asyncio.wait_for; CPython
    # gh-86296). Many rounds of publishing and acknowledging make that window likely.
    async def consume(subscription: events.Subscription) -> None:
        async for event in subscription:
            await event.ack()

    async with events.subscribe("app", "app-1", settings=own, count=1) as subscription:
        for round_ in range(10):
            reader = asyncio.create_task(consume(subscription))
            await publish(stream, *range(round_ * 10, round_ * 10 + 10))
            await cancel([reader])


async def test_a_pending_event_trimmed_from_the_stream_is_skipped_and_acknowledged(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    async with events.subscribe("app", "app-1", settings=own) as subscription:
        ids = await publish(stream, 1, 2)
        await take(subscription, 2)  # neither acknowledged
    await redis.xdel(keys_of(own).events(shard_of(ids[0])), split_id(ids[0])[0])  # as MAXLEN would

    async with events.subscribe("app", "app-1", settings=own) as subscription:
        assert [e.entry_id for e in await take(subscription, 1)] == [ids[1]]
        assert await pending_count(redis, own, "app") == 1  # only the one just delivered


async def test_iterating_without_async_with_creates_the_group_on_first_read(
    own: Settings, stream: EventStream
) -> None:
    subscription = events.subscribe("app", "app-1", settings=own, start="0")
    try:
        ids = await publish(stream, 1)
        async for event in subscription:
            assert event.entry_id == ids[0]
            await event.ack()
            break
    finally:
        await subscription.aclose()


@pytest.mark.parametrize(
    ("group", "consumer", "options", "message"),
    [
        ("", "c", {}, "non-empty"),
        ("g", "", {}, "non-empty"),
        ("g", "c", {"start": "latest"}, "stream entry id"),
        ("g", "c", {"start": "1-x"}, "stream entry id"),
        ("g", "c", {"count": 0}, "at least 1"),
        ("g", "c", {"block_ms": 0}, "at least 1"),
    ],
)
def test_subscribe_rejects_bad_arguments(
    own: Settings, group: str, consumer: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        events.subscribe(group, consumer, settings=own, **options)


async def test_follower_from_dollar_misses_nothing_published_after_it_started(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    await publish(stream, 0)
    follower = EventFollower(redis, keys_of(own), since="$", block_ms=1, count=100)
    assert await follower.read() == []  # a read that times out...
    ids = await publish(stream, 1, 2)  # ...and what arrives before the next one is kept
    assert [e.entry_id for e in await follower.read()] == ids


def fields(number: int) -> dict[FieldT, EncodableT]:
    return {"type": "token.refreshed", "data": json.dumps({"number": number})}


async def shard_pending(redis: Redis, keys: Keys, group: str) -> dict[int, int]:
    """The group's pending entries by shard, where there are any."""
    found = {}
    for shard in keys.all_shards:
        pending = int((await redis.xpending(keys.events(shard), group))["pending"])
        if pending:
            found[shard] = pending
    return found


async def test_a_group_reads_several_shards_merged_in_order_and_acks_each_in_its_shard(
    own: Settings, redis: Redis
) -> None:
    keys = keys_of(own)
    # Two shards' streams can hand out the same stream id: the merged order breaks the tie
    # by shard, and an entry id names its shard.
    await redis.xadd(keys.events(5), fields(1), id="1000-0")
    await redis.xadd(keys.events(2), fields(2), id="1000-0")
    await redis.xadd(keys.events(2), fields(3), id="1001-0")
    await redis.xadd(keys.events(9), fields(4), id="999-5")
    consumer = EventConsumer(redis, keys, "app", "app-1", block_ms=100, count=10)
    await consumer.create_group("0")

    read = await consumer.read()

    assert [e.entry_id for e in read] == ["999-5/9", "1000-0/2", "1000-0/5", "1001-0/2"]
    assert [e.data["number"] for e in read] == [4, 2, 1, 3]
    assert await shard_pending(redis, keys, "app") == {2: 2, 5: 1, 9: 1}
    # Acknowledged in its own shard: shard 2's entry of the same stream id stays pending.
    await consumer.ack("1000-0/5")
    assert await shard_pending(redis, keys, "app") == {2: 2, 9: 1}
    await consumer.ack("999-5/9", "1000-0/2", "1001-0/2")
    assert await shard_pending(redis, keys, "app") == {}

    # A group created at a qualified id starts exactly after that entry.
    later = EventConsumer(redis, keys, "later", "later-1", block_ms=100, count=10)
    await later.create_group("1000-0/2")
    assert [e.entry_id for e in await later.read()] == ["1000-0/5", "1001-0/2"]


async def test_following_from_an_entry_id_resumes_exactly_after_it(
    own: Settings, stream: EventStream, redis: Redis
) -> None:
    keys = keys_of(own)
    await redis.xadd(keys.events(5), fields(1), id="1000-0")
    await redis.xadd(keys.events(2), fields(2), id="1000-0")
    await redis.xadd(keys.events(2), fields(3), id="1001-0")
    await redis.xadd(keys.events(9), fields(4), id="999-5")
    published = await publish(stream, 5, 6, 7)  # now: after the hand-made ones

    everything = [e.entry_id for e in await EventFollower(
        redis, keys, since="0", block_ms=1, count=100).read()]  # fmt: skip

    assert everything == ["999-5/9", "1000-0/2", "1000-0/5", "1001-0/2", *published]
    assert everything == sorted(everything, key=order)
    for at, entry_id in enumerate(everything):
        follower = EventFollower(redis, keys, since=entry_id, block_ms=1, count=100)
        assert [e.entry_id for e in await follower.read()] == everything[at + 1 :], entry_id
    # A bare stream id applies to every shard: past both entries of 1000-0.
    follower = EventFollower(redis, keys, since="1000-0", block_ms=1, count=100)
    assert [e.entry_id for e in await follower.read()] == ["1001-0/2", *published]


async def test_events_follow_accepts_an_entry_id_it_handed_out(
    own: Settings, stream: EventStream
) -> None:
    first, second = await publish(stream, 1, 2)

    async with aclosing(events.follow(settings=own, since=first, block_ms=100)) as following:
        assert (await anext(following)).entry_id == second


async def test_one_read_fetches_at_most_count_events(own: Settings, stream: EventStream,
                                                     redis: Redis) -> None:  # fmt: skip
    consumer = EventConsumer(redis, keys_of(own), "app", "app-1", block_ms=100, count=1)
    await consumer.create_group("$")
    ids = await publish(stream, *range(6))
    assert len({shard_of(entry_id) for entry_id in ids}) > 1

    got = [entry.entry_id for _ in ids for entry in await consumer.read()]
    # One per read, none lost: what a read fetched beyond its count comes at the next ones.
    assert sorted(got, key=order) == sorted(ids, key=order) and len(got) == len(ids)


async def test_a_follower_hands_out_no_entry_past_a_shard_it_has_not_read_to(
    own: Settings, redis: Redis
) -> None:
    """Shard 0 holds fifty entries, shard 1 one in their middle. Read ten at a time, the
    later shard's entry waits until shard 0 has been read to it: every id handed out is a
    place to resume from that skips nothing."""
    keys = keys_of(own)
    for ms in range(1, 51):
        await redis.xadd(keys.events(0), fields(ms), id=f"{ms}-0")
    await redis.xadd(keys.events(1), fields(99), id="40-0")
    follower = EventFollower(redis, keys, since="0", block_ms=1, count=10)
    handed: list[str] = []
    while batch := await follower.read():
        handed += [e.entry_id for e in batch]
    everything = [f"{ms}-0/0" for ms in range(1, 41)] + ["40-0/1"]
    everything += [f"{ms}-0/0" for ms in range(41, 51)]
    assert handed == everything
    for at, entry_id in enumerate(handed):
        again = EventFollower(redis, keys, since=entry_id, block_ms=1, count=10)
        rest: list[str] = []
        while batch := await again.read():
            rest += [e.entry_id for e in batch]
        assert rest == handed[at + 1 :], entry_id


async def test_a_group_redis_lost_is_recreated_after_the_last_acknowledged_event(
    own: Settings, stream: EventStream, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = keys_of(own)
    async with events.subscribe("app", "app-1", settings=own, block_ms=200) as subscription:
        first = await publish(stream, 1, 2)
        got = await take(subscription, 2)
        assert [e.entry_id for e in got] == first
        await subscription.ack(*first)
        # Redis loses the group (a restart without persistence, a failover, a flush).
        for shard in keys.all_shards:
            await redis.xgroup_destroy(keys.events(shard), "app")
        later = await publish(stream, 3, 4)

        # Created again after what it acknowledged: the later events, and nothing again.
        assert [e.entry_id for e in await take(subscription, 2)] == later

    assert "events: consumer group app lost, recreated" in caplog.text
