"""Beat's ticks, quiet: Celery's per-tick lines go to DEBUG, one summary a period at INFO.

Beat runs `tokenlife.refresh_due` every second and `tokenlife.deliver_alerts` every two;
Celery logs each at INFO three times ("Scheduler: Sending due task" in celery.beat,
"Task … received" in celery.worker.strategy, "Task … succeeded" in celery.app.trace),
which buries every line that matters. The counting here is pure and takes `now`; the
counts themselves live in Redis (adapters/tick_tally.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Our periodic tasks; other tasks (an exchange, a refresh batch) keep Celery's INFO lines.
TICK_TASKS = frozenset({"tokenlife.refresh_due", "tokenlife.deliver_alerts"})
# The loggers and messages of Celery 5 that report a task sent, received or finished
# (celery/beat.py Scheduler.apply_entry, celery/worker/strategy.py, celery/app/trace.py).
TICK_LOGGERS = frozenset({"celery.beat", "celery.worker.strategy", "celery.app.trace"})


def is_tick_record(name: str, levelno: int, args: object) -> bool:
    """Whether a log record is Celery's INFO line about one of our ticks."""
    if levelno != logging.INFO or name not in TICK_LOGGERS:
        return False
    if isinstance(args, Mapping):  # trace and strategy log with a dict of fields
        return args.get("name") in TICK_TASKS
    if isinstance(args, tuple):  # beat: ("Scheduler: Sending due task %s (%s)", name, task)
        return any(isinstance(a, str) and a in TICK_TASKS for a in args)
    return False


class TickFilter(logging.Filter):
    """Lowers tick records to DEBUG; drops them unless the handler shows DEBUG."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_tick_record(record.name, record.levelno, record.args):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.threshold <= logging.DEBUG


def tally_period(now: float, period: float) -> int:
    """The summary period `now` falls in: every process on every machine counts its ticks
    into the same one (Redis, adapters/tick_tally.py), so one line a period covers the
    fleet. Clocks a moment apart only move a tick across a boundary."""
    return math.floor(now / period)


def tick_summary(
    counts: Mapping[str, str | int], period_index: int, period: float
) -> dict[str, Any] | None:
    """The summary line's fields for one period's tally (None: no tick ran in it). No
    task id or connection: it is about every tick of the period, not the one that logs."""
    if not counts:
        return None
    start = period_index * period
    return {
        "ticks": int(counts.get("ticks", 0)),
        "claimed": int(counts.get("claimed", 0)),
        "batches": int(counts.get("batches", 0)),
        "seconds": period,
        "period_start": datetime.fromtimestamp(start, UTC).isoformat(),
    }
