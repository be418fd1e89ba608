"""Token values never appear in Redis plaintext, events, task results or the worker log."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import Fakes, WorkerHandle, connect, consent, exchange
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


async def dump_all_values(redis: Redis, pattern: str) -> str:
    """Every string, hash, set and stream value under the prefix, as one text."""
    parts: list[str] = []
    async for key in redis.scan_iter(match=pattern, count=500):
        kind = await redis.type(key)
        if kind == "string":
            parts.append(str(await redis.get(key)))
        elif kind == "hash":
            parts.extend(f"{k!s}={v!s}" for k, v in (await redis.hgetall(key)).items())
        elif kind == "set":
            parts.extend(map(str, await redis.smembers(key)))
        elif kind == "stream":
            parts.extend(str(entry) for entry in await redis.xrange(key) or [])
        elif kind == "list":
            parts.extend(map(str, await redis.lrange(key, 0, -1)))
        elif kind == "zset":
            parts.extend(map(str, await redis.zrange(key, 0, -1)))
    return "\n".join(parts)


async def test_no_token_value_is_readable_anywhere(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = "user-" + uuid.uuid4().hex[:12]
    await connect(tl, worker, "google", cid, login_hint=cid)
    await connect(tl, worker, "microsoft", cid)
    await connect(tl, worker, "google-as-custom", cid, login_hint=cid)
    callback = await consent(tl, "generic", cid)
    # A failure path too: the secret-looking body must not leak into the error.
    fakes.generic.script(callback["code"], Reply(body=b'{"token_type": "x", "id": "at-leak"}'))
    await exchange(worker, state=callback["state"], code=callback["code"])

    issued = fakes.google.issued_secrets + fakes.microsoft.issued_secrets + ["at-leak"]
    assert len(issued) >= 4  # the flows above really issued tokens
    everything = await dump_all_values(redis, f"{settings.key_prefix}:*")
    log = worker.log()
    assert cid in everything  # the dump did see this test's connections
    for secret in issued:
        assert secret not in everything
        assert secret not in log
