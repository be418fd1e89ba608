"""What every command shares: settings and configuration errors as a message and exit 1,
a Runtime opened for the length of one coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from tokenlife.core.presets import Preset
from tokenlife.errors import TokenlifeError
from tokenlife.providers import load_presets
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings, load_settings

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except TokenlifeError as exc:
        raise click.ClickException(str(exc)) from None


async def with_runtime(settings: Settings, use: Callable[[Runtime], Awaitable[T]]) -> T:
    runtime = await Runtime.open(await load_config(settings))
    try:
        return await use(runtime)
    finally:
        await runtime.close()


def settings() -> Settings:
    try:
        return load_settings()
    except TokenlifeError as exc:
        raise click.ClickException(str(exc)) from None


def presets() -> dict[str, Preset]:
    try:
        return load_presets()
    except TokenlifeError as exc:
        raise click.ClickException(str(exc)) from None
