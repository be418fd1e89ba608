"""The Celery app, `tokenlife.worker:app`, and the one asyncio loop of each worker process.

`celery -A tokenlife.worker worker` works; `tokenlife worker` does the same after checking
the configuration. The configuration (settings, integrations, discovery) is loaded once in
the main process at `worker_init`, so a bad setting stops the worker before it forks (an
issuer that does not answer does not: that integration is unavailable and retried). Each
child then creates its loop and clients at `worker_process_init` and keeps them: an
`asyncio.run()` per task would close the loop under the Redis and aiohttp clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog
from celery import Celery, signals

from tokenlife import logs
from tokenlife.celery_config import celery_config
from tokenlife.errors import ConfigurationError
from tokenlife.preflight import report_at_start
from tokenlife.runtime import Config, Runtime, load_config
from tokenlife.settings import Settings, load_settings

T = TypeVar("T")
log = logging.getLogger(__name__)


def _settings_or_defaults() -> tuple[Settings, ConfigurationError | None]:
    # Importing this module must not fail (clients import it to send tasks); a bad
    # setting is reported when a worker starts.
    try:
        return load_settings(), None
    except ConfigurationError as exc:
        return Settings.model_construct(), exc


settings, settings_error = _settings_or_defaults()
app = Celery("tokenlife", include=["tokenlife.tasks"])
app.conf.update(celery_config(settings))

_config: Config | None = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (not on Windows): the refresh path is loop-bound."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ProcessRuntime:
    """One event loop and one Runtime per process; tasks run their coroutines on it."""

    def __init__(self, config: Config) -> None:
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.runtime = self.loop.run_until_complete(Runtime.open(config))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.runtime.config.integrations.unavailable:
            # Another process (the API, another worker) may have fetched the discovery
            # document since: take it before a task that may need the integration.
            self.loop.run_until_complete(self.runtime.adopt_cached_discovery())
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.close())
        self.loop.close()


_process: ProcessRuntime | None = None


def configure() -> Config:
    """Load and check the configuration; raise ConfigurationError with a readable message."""
    global _config
    if settings_error is not None:
        raise settings_error
    if _config is None:
        _config = asyncio.run(load_config(settings))
    return _config


def process_runtime() -> ProcessRuntime:
    global _process
    if _process is None:
        _process = ProcessRuntime(configure())
    return _process


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, logfile: str | None = None, **_: Any) -> None:
    """Celery's own logging goes through ours: a receiver on this signal stops Celery from
    configuring any logger (https://docs.celeryq.dev/en/stable/userguide/signals.html#setup-logging;
    celery/app/log.py `setup_logging_subsystem`: `if not receivers:` configures the root).
    Sent by the worker, embedded beat and `celery beat` alike, before they log anything."""
    logs.configure(
        level=settings.log_level or loglevel, fmt=settings.log_format, logfile=logfile or None
    )


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    # Every line logged while a task runs (coroutines on the process loop included: their
    # asyncio tasks copy this context) names the task.
    logs.clear()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    logs.clear()


@signals.worker_ready.connect
def _quiet_shutdown(sender: Any = None, **_: Any) -> None:
    """Where logs are JSON, Celery's "worker: Warm shutdown (MainProcess)", printed on
    stdout by its SIGTERM handler, becomes a log line: the same handler, re-installed
    with verbose=False (celery/apps/worker.py _shutdown_handler), and ours below."""
    # Not with REMAP_SIGTERM: Celery then makes SIGTERM a cold shutdown, kept as it is.
    if logs.wants_json(settings.log_format, sys.stderr) and not os.environ.get("REMAP_SIGTERM"):
        from celery.apps.worker import install_worker_term_handler

        # worker_ready's sender is the Consumer; the handler wants the WorkController.
        install_worker_term_handler(getattr(sender, "controller", sender), verbose=False)
        signals.worker_shutting_down.connect(_log_shutdown, weak=False)


def _log_shutdown(sig: str = "", how: str = "", **_: Any) -> None:
    log.info("worker: %s shutdown on %s", how.lower(), sig)


@signals.worker_init.connect
def _check_configuration(sender: Any = None, **_: Any) -> None:
    # Celery sets logging up after this signal (WorkController.on_init_blueprint); without
    # this the lines below would meet an unconfigured root logger and INFO would be lost.
    logfile = getattr(sender, "logfile", None)
    logs.configure(
        level=settings.log_level or getattr(sender, "loglevel", None),
        fmt=settings.log_format,
        logfile=logfile if logfile and "%" not in logfile else None,  # %n: Celery's node format
    )
    try:
        config = configure()
    except ConfigurationError as exc:
        # One line, as `tokenlife worker` says it (docs/cli.md: invalid settings exit 1).
        log.error("refusing to start: %s", logs.one_line(str(exc)))
        # SystemExit passes through Celery's signal dispatcher, which logs other errors
        # and carries on.
        raise SystemExit(1) from None
    log.info(
        "tokenlife worker: %d integration(s): %s",
        len(config.integrations),
        ", ".join(sorted(config.integrations)) or "none",
    )
    for entry in config.integrations.unavailable.values():
        # Not a reason to stop: every other integration works, and each worker process
        # retries discovery in the background (integration_discovery.DiscoveryRetry).
        log.error("tokenlife worker: integration %s unavailable: %s", entry.name, entry.reason)
    _preflight(config)


def _preflight(config: Config) -> None:
    """Findings go to the event stream as alert.configuration; they never stop the worker
    (what would stop it was refused above), and a preflight that can't run only warns."""
    try:
        findings = asyncio.run(
            report_at_start(config.settings, config.presets, os.environ, time.time())
        )
    except Exception as exc:
        log.warning("preflight could not run: %s", exc)
        return
    for finding in findings:
        log.warning("preflight %s %s: %s", finding.severity, finding.integration, finding.message)


@signals.worker_process_init.connect
def _start_process(**_: Any) -> None:
    global _process
    _process = None  # never reuse a loop inherited over fork
    process_runtime()


@signals.worker_process_shutdown.connect
def _stop_process(**_: Any) -> None:
    if _process is not None:
        _process.close()
