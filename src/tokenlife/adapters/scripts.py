"""Lua scripts, kept as .lua files beside this module and registered once per client."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# A line `--#include NAME` is replaced by NAME.lua: a function several scripts share.
_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


@cache
def _source(name: str) -> str:
    text = resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
    return _INCLUDE.sub(lambda m: _source(m.group(1)), text)


def register(redis: Redis, name: str) -> AsyncScript:
    return redis.register_script(_source(name))
