"""Through the real worker: a GitHub-like provider (no ID token) tells the account from
its account endpoint, and a reconnect by another account leaves the connection as it was."""

from __future__ import annotations

import uuid
from typing import cast

from redis.asyncio import Redis

from tests.support import Fakes, WorkerHandle, connect, events_for
from tokenlife.adapters.keys import Keys
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


async def test_a_reconnect_by_another_github_account_is_refused_by_the_worker(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = "gh-" + uuid.uuid4().hex[:12]
    key = Keys(settings.key_prefix, settings.redis_shards).connection("github-account", cid)
    first = await connect(tl, worker, "github-account", cid, login_hint="octocat")
    assert first["error"] is None
    before = cast(dict[str, str], await redis.hgetall(key))
    assert before["subject"] == str(fakes.generic.account_id("octocat"))

    again = await connect(tl, worker, "github-account", cid, login_hint="octocat")
    assert again["error"] is None
    assert (await redis.hget(key, "version")) == "2"
    replaced = cast(dict[str, str], await redis.hgetall(key))

    stranger = await connect(tl, worker, "github-account", cid, login_hint="mallory")

    assert (stranger["outcome"], stranger["error"]) == ("failed", "subject_mismatch")
    assert await redis.hgetall(key) == replaced
    events = await events_for(redis, settings, cid)
    failed = [d["error"] for t, d in events if t == "exchange.failed"]
    assert failed == ["subject_mismatch"]
