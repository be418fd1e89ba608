"""Lua scripts, kept as .lua files beside this module and registered once per client."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from tokenlife.adapters.redis_client import is_cluster

# How often a process loads its pipelined scripts on a Cluster's primaries again.
_RELOAD_SECONDS = 60.0
# A line `--#include NAME` is replaced by NAME.lua: a function several scripts share.
_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


@cache
def _source(name: str) -> str:
    text = resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
    return _INCLUDE.sub(lambda m: _source(m.group(1)), text)


class Script:
    """A script called as redis-py's AsyncScript is: `await script(keys=, args=)`, or
    queued on a pipeline with `client=pipe`. redis-py refuses EVALSHA inside a Redis Cluster
    pipeline (it is in PIPELINE_BLOCKED_COMMANDS), so there the script is loaded on every
    master once and queued as a plain EVALSHA, which the pipeline routes by its keys."""

    def __init__(self, redis: Redis, source: str) -> None:
        self._redis = redis
        self._inner: AsyncScript = redis.register_script(source)
        self._source = source
        self._loaded_at: float | None = None

    async def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        if client is None or not is_cluster(self._redis):
            return await self._inner(keys=keys, args=args, client=client)
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > _RELOAD_SECONDS:
            # SCRIPT LOAD goes to every primary. A replica promoted since (or a primary
            # restarted empty) answers NOSCRIPT to the pipelines that reach it, each a
            # failed call its caller handles, until the next load here.
            # Calls that come meanwhile load it too: none queues it before it is there.
            await self._redis.script_load(self._source)
            self._loaded_at = now
        client.execute_command("EVALSHA", self._inner.sha, len(keys), *keys, *args)
        return client


def register(redis: Redis, name: str) -> Script:
    return Script(redis, _source(name))
