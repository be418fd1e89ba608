"""The layout check at start-up and `reshard`: connections written before shards, or with
another shard count, move whole (token set, schedule, deadline, backoff, counts, pending
states) and nothing of the old layout is left but its event stream."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.key_layout import KeyLayout, LayoutMismatch
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.status_counts import StatusCounts
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet

NOW = 1_800_000_000.0
IDS = ("alice", "bob", "carol:with-colon")


async def _save(store: TokenStore, cid: str, due: float) -> None:
    tokens = TokenSet(access_token=f"at-{cid}", token_type="Bearer", refresh_token=f"rt-{cid}",
                      expires_at=NOW + 3600, lifetime_seconds=3600, lifetime_source="expires_in",
                      granted_scopes=("email",))  # fmt: skip
    await store.save(
        integration="google", connection_id=cid, provider="google", tokens=tokens,
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=("email",),
        next_check_at=due, now=NOW,
    )  # fmt: skip


async def _all_keys(redis: Redis, prefix: str) -> set[str]:
    return {str(k) async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)}


async def _write_legacy(redis: Redis, cipher: Cipher, prefix: str) -> dict[str, dict[str, str]]:
    """Three connections as tokenlife before shards stored them: the records are written by
    today's store under a scratch prefix, then copied to the old key names."""
    scratch = Keys(f"{prefix}-scratch")
    store = TokenStore(redis, scratch, cipher)
    records = {}
    for i, cid in enumerate(IDS):
        await _save(store, cid, due=NOW + 100 + i)
        records[cid] = cast(dict[str, str], await redis.hgetall(scratch.connection("google", cid)))
    async with redis.pipeline(transaction=False) as pipe:
        for i, cid in enumerate(IDS):
            member = f"google:{cid}"
            pipe.hset(f"{prefix}:conn:google:{cid}", mapping=cast(dict[Any, Any], records[cid]))
            pipe.sadd(f"{prefix}:conns:google", cid)
            pipe.zadd(f"{prefix}:schedule", {member: NOW + 100 + i})
            pipe.zadd(f"{prefix}:deadlines", {member: NOW + 3600})
        pipe.zadd(f"{prefix}:backoff:google", {"google:bob": NOW + 500})
        pipe.hset(f"{prefix}:status-counts", mapping={"google:active": 3, "_counted_at": NOW})
        pipe.set(f"{prefix}:pending:some-state", '{"integration": "google"}', ex=600)
        pipe.xadd(f"{prefix}:events", {"type": "connection.authorized", "data": "{}"})
        await pipe.execute()
    for key in await _all_keys(redis, scratch.prefix):
        await redis.delete(key)
    return records


async def test_connections_of_the_layout_before_shards_refuse_the_start_and_move_whole(
    redis: Redis, keys: Keys, cipher: Cipher
) -> None:
    records = await _write_legacy(redis, cipher, keys.prefix)
    layout = KeyLayout(redis, keys)

    with pytest.raises(LayoutMismatch, match="connections reshard"):
        await layout.check()
    moved = await layout.reshard(NOW)

    assert (moved.connections, moved.pending, moved.from_layouts) == (3, 1, ["before shards"])
    await layout.check()  # recorded now: starts
    store = TokenStore(redis, keys, cipher)
    for i, cid in enumerate(IDS):
        stored = cast(dict[str, str], await redis.hgetall(keys.connection("google", cid)))
        assert stored == records[cid]
        assert (await store.tokens("google", cid)).refresh_token == f"rt-{cid}"
        member = keys.member("google", cid)
        shard = keys.shard("google", cid)
        assert await redis.zscore(keys.schedule(shard), member) == NOW + 100 + i
        assert await redis.zscore(keys.token_deadlines(shard), member) == NOW + 3600
        assert await redis.zscore(keys.connections("google", shard), cid) == 0
    bob = keys.shard("google", "bob")
    assert await redis.zscore(keys.backoff("google", bob), "google:bob") == NOW + 500
    counts = await StatusCounts(redis, keys).read(["google"], NOW)
    assert counts["active"] == 3
    assert 0 < await redis.pttl(keys.pending("some-state")) <= 600_000
    # Only the old event stream is left of the old layout (read it before moving).
    old = {k for k in await _all_keys(redis, keys.prefix) if ":{" not in k}
    assert old == {f"{keys.prefix}:events", keys.layout}
    again = await layout.reshard(NOW)
    assert (again.connections, again.pending) == (0, 0)


async def test_another_shard_count_refuses_the_start_until_resharded_and_keeps_nothing_old(
    redis: Redis, keys: Keys, cipher: Cipher
) -> None:
    sixteen = Keys(keys.prefix, 16)
    await KeyLayout(redis, sixteen).check()  # a fresh Redis: records 16
    for i, cid in enumerate(IDS):
        await _save(TokenStore(redis, sixteen, cipher), cid, due=NOW + i)
    four = Keys(keys.prefix, 4)

    with pytest.raises(LayoutMismatch, match="over 16 shards but TOKENLIFE_REDIS_SHARDS is 4"):
        await KeyLayout(redis, four).check()
    moved = await KeyLayout(redis, four).reshard(NOW)

    assert (moved.connections, moved.from_layouts) == (3, ["16 shards"])
    await KeyLayout(redis, four).check()
    with pytest.raises(LayoutMismatch):
        await KeyLayout(redis, sixteen).check()
    store = TokenStore(redis, four, cipher)
    for i, cid in enumerate(IDS):
        assert (await store.tokens("google", cid)).access_token == f"at-{cid}"
        assert await redis.zscore(four.schedule_of("google", cid), f"google:{cid}") == NOW + i
    left = [k async for k in redis.scan_iter(match=sixteen.layout_pattern("*"), count=1000)]
    assert left == []
    assert (await StatusCounts(redis, four).read(["google"], time.time()))["active"] == 3


async def test_a_reshard_stopped_part_way_then_run_again_for_another_count_loses_nothing(
    redis: Redis, keys: Keys, cipher: Cipher
) -> None:
    """A run from the layout before shards to 16 stopped after moving some connections,
    and the setting then changed to 4: the next run moves the old layout's and the 16
    shards' connections alike, and ends with everything recorded."""
    await _write_legacy(redis, cipher, keys.prefix)
    sixteen = Keys(keys.prefix, 16)
    await redis.hset(sixteen.layout, "resharding", "16")  # what the stopped run recorded
    moved_before = "carol:with-colon"  # this one had moved already
    record = cast(dict[Any, Any], await redis.hgetall(f"{keys.prefix}:conn:google:{moved_before}"))
    await redis.delete(f"{keys.prefix}:conn:google:{moved_before}")
    await redis.hset(sixteen.connection("google", moved_before), mapping=record)
    shard = sixteen.shard("google", moved_before)
    await redis.zadd(sixteen.connections("google", shard), {moved_before: 0})
    four = Keys(keys.prefix, 4)

    with pytest.raises(LayoutMismatch, match="reshard"):
        await KeyLayout(redis, four).check()
    moved = await KeyLayout(redis, four).reshard(NOW)

    assert moved.connections == 3
    assert set(moved.from_layouts) == {"before shards", "16 shards"}
    await KeyLayout(redis, four).check()
    store = TokenStore(redis, four, cipher)
    for cid in IDS:
        assert (await store.tokens("google", cid)).refresh_token == f"rt-{cid}"
    assert not await redis.hexists(four.layout, "resharding")
    # Delivery's group is on every new stream from its start: nothing emitted before its
    # first run is skipped.
    for n in four.all_shards:
        groups = await redis.xinfo_groups(four.events(n))
        assert [(g["name"], g["last-delivered-id"]) for g in groups] == [
            ("tokenlife-alerts", "0-0")
        ]
