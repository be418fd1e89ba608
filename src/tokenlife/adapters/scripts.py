"""Lua scripts, kept as .lua files beside this module and registered once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def _source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")


def register(redis: Redis, name: str) -> AsyncScript:
    return redis.register_script(_source(name))
