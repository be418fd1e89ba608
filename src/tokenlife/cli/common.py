"""What every command shares: settings, the exit codes scripts rely on (docs/cli.md), errors
as one line on stderr with their code, a Runtime opened for the length of one coroutine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from enum import IntEnum
from typing import Any, TypeVar

import click
from redis.exceptions import RedisError

from tokenlife.core.presets import Preset
from tokenlife.errors import (
    ReauthorizationRequiredError,
    TokenlifeError,
    TransientError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.providers import load_presets
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings, load_settings

T = TypeVar("T")


class Exit(IntEnum):
    """Exit codes, documented in docs/cli.md; a script may branch on each."""

    OK = 0
    ERROR = 1  # configuration, a stored value no key decrypts, anything unexpected
    USAGE = 2  # a bad option or argument (click's own code), an invalid connection id
    NOT_FOUND = 3  # no such integration or connection (or its record is unreadable)
    REAUTHORIZE = 4  # the user has to connect again: no refresh can help
    UNAVAILABLE = 5  # Redis, the provider or the connection's lock: try again later
    OLD_KEYS = 6  # keys: records still need a key other than the first


class Failure(click.ClickException):
    """An error printed as `Error: message` with its own exit code."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        # click declares exit_code a class variable; each Failure carries its own.
        setattr(self, "exit_code", int(code))  # noqa: B010


def exit_code(exc: BaseException) -> Exit:
    if isinstance(exc, UnknownIntegrationError | UnknownConnectionError):
        return Exit.NOT_FOUND  # CorruptRecordError included, as the API's 404
    if isinstance(exc, UsageError):
        return Exit.USAGE  # an invalid connection id, say
    if isinstance(exc, ReauthorizationRequiredError):
        return Exit.REAUTHORIZE
    if isinstance(exc, TransientError | RedisError | OSError):
        return Exit.UNAVAILABLE
    return Exit.ERROR


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except (TokenlifeError, RedisError) as exc:
        raise Failure(_message(exc), exit_code(exc)) from None


def _message(exc: BaseException) -> str:
    if isinstance(exc, RedisError):  # its text may carry the URL and so a password
        return f"Redis unavailable ({type(exc).__name__}); try again"
    return str(exc)


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
        raise Failure(str(exc)) from None


def presets() -> dict[str, Preset]:
    try:
        return load_presets()
    except TokenlifeError as exc:
        raise Failure(str(exc)) from None


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
