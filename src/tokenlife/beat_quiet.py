"""Beat's ticks, quiet: Celery's per-tick lines go to DEBUG, one summary a period at INFO.

Beat runs `tokenlife.refresh_due` every second and `tokenlife.deliver_alerts` every two;
Celery logs each at INFO three times ("Scheduler: Sending due task" in celery.beat,
"Task … received" in celery.worker.strategy, "Task … succeeded" in celery.app.trace),
which buries every line that matters. The counting here is pure and takes `now`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

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


@dataclass
class TickTally:
    """What the refresh ticks of one worker process did since the last summary."""

    period: float
    started_at: float | None = None
    ticks: int = 0
    claimed: int = 0
    batches: int = 0

    def add(self, now: float, *, claimed: int, batches: int) -> dict[str, float] | None:
        """Count one tick; the summary (and a fresh count) once `period` has passed."""
        if self.started_at is None:
            self.started_at = now
        self.ticks += 1
        self.claimed += claimed
        self.batches += batches
        if now - self.started_at < self.period:
            return None
        summary = {
            "ticks": self.ticks,
            "claimed": self.claimed,
            "batches": self.batches,
            "seconds": round(now - self.started_at, 1),
        }
        self.started_at, self.ticks, self.claimed, self.batches = now, 0, 0, 0
        return summary
