"""An app's own Celery project, as a test runs it: `celery -A tests.fakes.app_celery worker`.

It shares tokenlife's broker (tokenlife.celery_signatures.broker_settings, from the
TOKENLIFE_* environment the test gives it), so a chain that starts with tokenlife's
exchange continues here; its tasks go to a queue of its own, `<prefix>-app`. It never
imports tokenlife.worker. What its tasks got is kept in Redis, for the test to read.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import Celery

from tokenlife.celery_signatures import broker_settings
from tokenlife.settings import load_settings

settings = load_settings()
QUEUE = f"{settings.key_prefix}-app"
app = Celery("test-app")
app.conf.update(
    broker_settings(settings),
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
)


def summaries_key(prefix: str) -> str:
    return f"{prefix}:test-app:summaries"


def events_key(prefix: str) -> str:
    return f"{prefix}:test-app:events"


def _record(key: str, value: dict[str, Any]) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.rpush(key, json.dumps(value))
    finally:
        client.close()


@app.task(name="test_app.record_summary")
def record_summary(summary: dict[str, Any]) -> str:
    """What an app does once a connect went through: here, keep the summary."""
    _record(summaries_key(settings.key_prefix), summary)
    return f"{summary['integration']}/{summary['connection_id']}: {summary['outcome']}"


@app.task(name="test_app.record_event", bind=True)
def record_event(self: Any, event: dict[str, Any], label: str = "") -> None:
    """What an app does after an event: here, keep it with the task id it came under."""
    _record(events_key(settings.key_prefix), {"task_id": self.request.id, "label": label,
                                               "event": event})  # fmt: skip


@app.task(name="test_app.loaded")
def loaded(names: list[str]) -> list[str]:
    """Which of these modules this worker process has imported."""
    import sys

    return [name for name in names if name in sys.modules]
