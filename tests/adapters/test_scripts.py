"""Scripts queued on a pipeline (adapters/scripts.py): no SCRIPT EXISTS round trip before
each pipeline, and a server that lacks a script (first use, restart, SCRIPT FLUSH) still
runs it, once, with nothing else in the pipeline run twice. Against a redis-server of the
test's own, so its command counts are this test's alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tests.redis_process import RedisProcess
from tokenlife.adapters import scripts
from tokenlife.adapters.scripts import Script

# Adds its argument to a counter and returns the new value; or fails when asked to.
COUNT = """
if ARGV[1] == 'fail' then return redis.error_reply('ERR asked to fail') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[Redis]:
    server = RedisProcess(tmp_path, "--appendonly", "no")
    server.start()
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()
        server.kill()


async def calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_a_lost_script_runs_once_and_a_loaded_one_costs_no_extra_round_trip(
    own_redis: Redis,
) -> None:
    count = Script(own_redis, COUNT)
    await own_redis.script_flush()
    before = await calls(own_redis)
    async with own_redis.pipeline(transaction=False) as pipe:
        pipe.incr("plain")
        await count(keys=["counted"], args=[5], client=pipe)
        await count(keys=["counted"], args=[2], client=pipe)
        pipe.get("counted")
        first = await scripts.execute(pipe)
    # The server had no script: both EVALSHAs met NOSCRIPT, so the GET, sent after them in
    # the same pipeline, saw nothing; each ran again alone, in order.
    assert first == [1, 5, 7, None]
    assert await own_redis.get("plain") == "1"  # the pipeline's own commands ran once
    async with own_redis.pipeline(transaction=False) as pipe:
        await count(keys=["counted"], args=[1], client=pipe)
        second = await scripts.execute(pipe)
    assert second == [8]
    sent = {name: n - before.get(name, 0) for name, n in (await calls(own_redis)).items()}
    assert sent.get("script|exists", 0) == 0
    assert sent["script|load"] == 1  # redis-py's AsyncScript loaded it once, on NOSCRIPT
    # Two lost in the pipeline; run again alone, the first met NOSCRIPT once more and ran
    # after the load, the second ran at once; the next pipeline's found it.
    assert sent["evalsha"] == 2 + (2 + 1) + 1


async def test_errors_are_raised_or_left_in_place(own_redis: Redis) -> None:
    count = Script(own_redis, COUNT)
    async with own_redis.pipeline(transaction=False) as pipe:
        await count(keys=["n"], args=["fail"], client=pipe)
        pipe.set("after", "1")
        with pytest.raises(ResponseError, match="asked to fail"):
            await scripts.execute(pipe)
    assert await own_redis.get("after") == "1"  # a non-transactional pipeline runs on
    async with own_redis.pipeline(transaction=False) as pipe:
        await count(keys=["n"], args=[3], client=pipe)
        await count(keys=["n"], args=["fail"], client=pipe)
        replies = await scripts.execute(pipe, raise_on_error=False)
    assert replies[0] == 3
    assert isinstance(replies[1], ResponseError)


async def test_a_script_lost_then_refused_is_left_in_place(own_redis: Redis) -> None:
    count = Script(own_redis, COUNT)
    await own_redis.script_flush()
    async with own_redis.pipeline(transaction=False) as pipe:
        await count(keys=["m"], args=["fail"], client=pipe)
        await count(keys=["m"], args=[4], client=pipe)
        replies = await scripts.execute(pipe, raise_on_error=False)
    # Both met NOSCRIPT; run again, the first was refused by the script itself.
    assert isinstance(replies[0], ResponseError)
    assert "asked to fail" in str(replies[0])
    assert replies[1] == 4


async def test_a_script_refuses_a_transaction_pipeline(own_redis: Redis) -> None:
    """Run again after the pipeline, it would run outside the MULTI/EXEC."""
    count = Script(own_redis, COUNT)
    async with own_redis.pipeline(transaction=True) as pipe:
        with pytest.raises(TypeError, match="transaction=False"):
            await count(keys=["t"], args=[1], client=pipe)
