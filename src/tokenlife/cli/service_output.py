"""What a service command (`up | run | worker | beat | api`) says before it runs: to the
log stream like everything else, a JSON line where JSON is logged (not a terminal, or
TOKENLIFE_LOG_FORMAT=json), a plain line for a person at a terminal."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import click

from tokenlife import logs
from tokenlife.cli import common
from tokenlife.errors import TokenlifeError
from tokenlife.settings import Settings, load_settings

_log = logging.getLogger("tokenlife.cli")


def service_settings() -> Settings:
    """The settings, with logging configured from them (or from TOKENLIFE_LOG_* alone when
    the rest is invalid, so the refusal is logged in the right format); invalid: exit 1."""
    logs.configure_from_environment("INFO")
    try:
        return load_settings()
    except TokenlifeError as exc:
        refuse(str(exc))


def json_logs() -> bool:
    fmt: str
    try:
        fmt = load_settings().log_format
    except TokenlifeError:  # the rest is invalid: read the format alone
        fmt = os.environ.get("TOKENLIFE_LOG_FORMAT", "auto").strip().lower() or "auto"
    return logs.wants_json(fmt, sys.stderr)


def say(message: str, level: int = logging.INFO) -> None:
    if json_logs():
        _log.log(level, message)
    else:
        click.echo(f"tokenlife: {message}", err=True)


def refuse(message: str) -> NoReturn:
    """Bad settings stop every service command alike: exit 1 (docs/cli.md) with one line,
    `Error: ...` or one JSON log line."""
    line = logs.one_line(message)
    if json_logs():
        _log.error("refusing to start: %s", line)
        sys.exit(int(common.Exit.ERROR))
    raise click.ClickException(f"refusing to start: {line}")


def celery_quiet() -> list[str]:
    """Celery's global --quiet: no start-up banner on stdout, which is not JSON
    (celery/apps/worker.py emit_banner, celery/apps/beat.py run)."""
    return ["--quiet"] if json_logs() else []
