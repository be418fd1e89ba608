"""One logging configuration for the worker, beat, the API and the CLI (docs/logging.md).

structlog renders every line, ours (`logging.getLogger`, `structlog.get_logger`) and
every library's (Celery, kombu, aiohttp) alike: our stdlib loggers propagate to the one
root handler, whose formatter is structlog's ProcessorFormatter
(https://www.structlog.org/en/stable/standard-library.html#rendering-using-structlog-based-formatters-within-logging).
Celery hands its logging over to us through its `setup_logging` signal: "Celery won't
configure the loggers if this signal is connected"
(https://docs.celeryq.dev/en/stable/userguide/signals.html#setup-logging); see worker.py.

Lines about a connection carry `integration`, `connection_id` and `provider` from
structlog.contextvars: each connection of a refresh batch is refreshed in its own asyncio
task (asyncio.gather wraps each coroutine in one), and a task runs in a copy of the
context it was created in, so what one connection binds never shows on another's lines.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tokenlife.beat_quiet import TickFilter
from tokenlife.errors import ConfigurationError
from tokenlife.log_redaction import redact_event
from tokenlife.settings import Settings, load_settings

# The token values and codes the current context holds (see conceal()).
_held: ContextVar[tuple[str, ...]] = ContextVar("tokenlife_log_secrets", default=())
# The most recent values kept: a library caller that asks for tokens in one long-lived
# task would otherwise grow the tuple forever. A refresh or an exchange holds at most five.
_HELD_AT_MOST = 32

# Our own loggers, when asked for without a name (the summary line, tests).
LOGGER_NAME = "tokenlife"


def one_line(text: str) -> str:
    """A multi-line message (a settings report) as one log line: "a:\n  b\n  c" becomes
    "a: b; c"."""
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    line = ""
    for part in parts:
        line += part if not line else (" " if line.endswith(":") else "; ") + part
    return line


def conceal(*values: str | None) -> None:
    """Never print these values (a token, a code) on a line logged from this context.

    The regular expressions of log_redaction catch secrets by their shape; this catches
    one echoed in free text, e.g. a provider's error_description that repeats the token.
    """
    new = tuple(v for v in values if v)
    if new:
        _held.set((_held.get() + new)[-_HELD_AT_MOST:])


def bind_connection(integration: str, connection_id: str, provider: str | None = None) -> None:
    """Put the connection on every line logged from this context (and tasks it starts)."""
    fields = {"integration": integration, "connection_id": connection_id}
    structlog.contextvars.bind_contextvars(**fields, **({"provider": provider} if provider else {}))


@contextmanager
def unbound() -> Iterator[None]:
    """Log a line without this context's fields (task, connection), then put them back."""
    saved = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    try:
        yield
    finally:
        structlog.contextvars.bind_contextvars(**saved)


def clear() -> None:
    """Forget what this context bound (between two Celery tasks of one process)."""
    structlog.contextvars.clear_contextvars()
    _held.set(())


def _redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return redact_event(event, _held.get())


_FIRST = ("timestamp", "level", "logger", "message")


def _first_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # A person reading raw JSON lines finds when, how bad and what at the start of each.
    return {k: event[k] for k in _FIRST if k in event} | {
        k: v for k, v in event.items() if k not in _FIRST
    }


def wants_json(fmt: str, stream: IO[str] | None) -> bool:
    """`auto` means JSON lines unless a person is watching the log stream."""
    if fmt != "auto":
        return fmt == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def level_number(level: str | int | None, default: int = logging.INFO) -> int:
    if level is None:
        return default
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else default


def configure(
    *,
    level: str | int | None = None,
    fmt: str = "auto",
    stream: IO[str] | None = None,
    logfile: str | None = None,
) -> logging.Handler:
    """Route all logging of this process through one structlog-rendered handler.

    Writes to `logfile` when given (Celery's --logfile), else to `stream` (stderr: stdout
    is the CLI's output, e.g. `--json`). Idempotent: calling it again replaces the handler.
    """
    threshold = level_number(level)
    handler: logging.Handler
    if logfile:
        # Reopens the file when logrotate moved it.
        handler = logging.handlers.WatchedFileHandler(logfile, encoding="utf-8")
        as_json = fmt != "console"
    else:
        target = stream if stream is not None else sys.stderr
        handler = logging.StreamHandler(target)
        as_json = wants_json(fmt, target)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer(default=str)
        finish: list[Processor] = [structlog.processors.EventRenamer("message"), _first_fields]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        finish = []
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Tracebacks become text here, so the redaction below sees them too (an
                # aiohttp error's message holds the URL with its query string).
                structlog.processors.format_exc_info,
                _redact,
                *finish,
                renderer,
            ],
        )
    )
    handler.setLevel(threshold)
    handler.addFilter(TickFilter(threshold))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    # Python's warnings (Celery's SecurityWarning, a DeprecationWarning) are log lines too,
    # not plain text on stderr beside the JSON.
    logging.captureWarnings(True)
    # Celery gives its own loggers handlers of their own unless we take over; make sure
    # every record reaches the one handler above, and only once.
    for name in ("celery", "celery.task", "celery.redirected", "kombu", "amqp"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # aiohttp's access log would print query strings (state, code); `tokenlife api` also
    # runs without one (access_log=None), this keeps a library user's app honest too.
    logging.getLogger("aiohttp.access").disabled = True
    # Apprise logs the full target URL at DEBUG ("Slack POST URL: https://hooks.slack.com/
    # services/T…/B…/secret", apprise/plugins/slack.py), a credential in a path no pattern
    # can tell apart; at INFO and above it prints URLs with privacy=True.
    logging.getLogger("apprise").setLevel(max(threshold, logging.INFO))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def get_logger(name: str = LOGGER_NAME) -> Any:
    """A structlog logger for lines with fields of their own (rendered like every other)."""
    return structlog.get_logger(name)


def configure_from_environment(default_level: str = "WARNING") -> None:
    """configure() from TOKENLIFE_LOG_*, for the CLI: a command that only prints (`connections
    list`) shows warnings and errors; the service commands pass INFO. Invalid settings
    don't stop this: the command itself reports them."""
    try:
        settings = load_settings()
    except ConfigurationError:
        settings = Settings.model_construct()
    configure(level=settings.log_level or default_level, fmt=settings.log_format)
