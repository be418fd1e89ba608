"""Lua scripts, kept as .lua files beside this module and registered once per client."""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

# A line `--#include NAME` is replaced by NAME.lua: a function several scripts share.
_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


@cache
def _source(name: str) -> str:
    text = resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
    return _INCLUDE.sub(lambda m: _source(m.group(1)), text)


class Script:
    """A script called as redis-py's AsyncScript is: `await script(keys=, args=)`, or
    queued on a pipeline with `client=pipe`, which `execute(pipe)` then runs.

    Queued, it is a plain EVALSHA, never loaded first. redis-py's own pipelines send
    SCRIPT EXISTS before every pipeline that holds a script (Pipeline.load_scripts): a
    round trip more for each claim and each write, two per refresh. And redis-py refuses
    EVALSHA inside a Redis Cluster pipeline (PIPELINE_BLOCKED_COMMANDS) unless queued as a
    plain command. A server that lacks the script (its first use, a restart, a promoted
    replica, SCRIPT FLUSH) answers NOSCRIPT without running anything, and `execute` runs
    that one script again on its own, which loads it."""

    def __init__(self, redis: Redis, source: str) -> None:
        self._redis = redis
        self._inner: AsyncScript = redis.register_script(source)

    async def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        if client is None:
            return await self._inner(keys=keys, args=args)
        if not _plain_pipeline(client):
            # A script run again after the pipeline would run outside its MULTI/EXEC.
            raise TypeError("a Script is queued only on a pipeline(transaction=False)")
        _queued.setdefault(client, []).append((len(client), self, keys, args))
        client.execute_command("EVALSHA", self._inner.sha, len(keys), *keys, *args)
        return client

    async def load(self) -> None:
        """Load it now (on every primary of a Cluster): for a bulk load of pipelines, which
        would otherwise each run it again alone the first time."""
        await self._redis.script_load(self._inner.script)


def _plain_pipeline(client: Any) -> bool:
    if isinstance(client, Pipeline):
        return not client.is_transaction
    return isinstance(client, ClusterPipeline) and not client._transaction


# What each pipeline holds of scripts: (position, script, keys, args), until `execute`.
_queued: weakref.WeakKeyDictionary[Any, list[tuple[int, Script, Sequence[Any], Sequence[Any]]]]
_queued = weakref.WeakKeyDictionary()


async def execute(pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
    """`pipe.execute()` for a pipeline that holds scripts queued by `Script`: each that met
    NOSCRIPT runs again alone (EVALSHA, then SCRIPT LOAD and EVALSHA: redis-py's
    AsyncScript), after the rest of the pipeline. With `raise_on_error`, the first error
    left is raised, as redis-py does; otherwise errors stay in place in the replies.

    Only a server's answer (ResponseError) is left in place from a script run again: a
    connection lost meanwhile raises, as the script may have run, and callers that give
    back what a script took do so when `execute` raises."""
    queued = _queued.pop(pipe, [])
    replies: list[Any] = list(await pipe.execute(raise_on_error=False))
    for position, script, keys, args in queued:
        if isinstance(replies[position], NoScriptError):
            try:
                replies[position] = await script(keys=keys, args=args)
            except ResponseError as exc:
                replies[position] = exc
    if raise_on_error:
        for reply in replies:
            if isinstance(reply, Exception):
                # Unlike redis-py, not annotated with the command: that would quote its keys.
                raise reply
    return replies


def register(redis: Redis, name: str) -> Script:
    return Script(redis, _source(name))
