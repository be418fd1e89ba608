"""Celery's configuration for tokenlife: a pure function of the settings, imported by the
worker, the API, `tokenlife doctor` and tests without starting anything (importing
tokenlife.worker reads the environment at import time)."""

from __future__ import annotations

import math
from typing import Any

from tokenlife import broker_transport
from tokenlife.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    # Every broker and result key lives under the key prefix too, so two deployments
    # (or test runs) can share one Redis database without seeing each other's tasks.
    namespace = {"global_keyprefix": f"{settings.key_prefix}:celery:"}
    # After a Redis restart every client reconnects by itself (issue 9 §4). kombu's Redis
    # transport PINGs idle connections every `health_check_interval` and drops a BRPOP
    # connection whose reply is overdue; `socket_timeout` keeps a publish from hanging on
    # a half-open connection, which would stop those checks (kombu/transport/redis.py).
    health = math.ceil(settings.redis_health_check_seconds)
    broker_options = {**namespace, "health_check_interval": health, "socket_timeout": 30.0,
                      "socket_connect_timeout": 5.0, "retry_on_timeout": True}  # fmt: skip
    # Result-backend calls retry on connection errors for a few seconds: a restart that
    # takes longer fails the call, never the worker (celery/backends/redis.py `ensure`).
    retry_policy = {"max_retries": 20, "interval_start": 0, "interval_step": 0.2,
                    "interval_max": 1.0}  # fmt: skip
    transport: dict[str, Any] = {}
    if settings.effective_broker_url.startswith("redis://"):
        # kombu's Redis transport, minus its crash when Redis dies under a task in flight.
        transport["broker_transport"] = broker_transport.ALIAS
    return {
        **transport,
        "broker_url": settings.effective_broker_url,
        "result_backend": settings.result_backend_url,
        "broker_transport_options": broker_options,
        "result_backend_transport_options": {**namespace, "retry_policy": retry_policy},
        "redis_backend_health_check_interval": health,
        "redis_retry_on_timeout": True,
        "redis_socket_timeout": 30.0,
        "redis_socket_connect_timeout": 5.0,
        # Reconnect to the broker for as long as it takes; the default gives up after 100
        # attempts and the worker exits.
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        # Explicit, as Celery 6 flips the default: a task running when the broker connection
        # drops keeps running. Cancelling a refresh mid-rotation could drop the new token.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Publishing (the API's refresh_now, beat's ticks) rides out a restart of a few
        # seconds instead of failing after the default 3 quick retries.
        "task_publish_retry": True,
        "task_publish_retry_policy": retry_policy,
        "task_default_queue": settings.key_prefix,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 3600,
        # A task is acknowledged after it ran: a crash mid-exchange redelivers it, and
        # the state claim (bound to the task id) lets the same task resume.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Our setup_logging receiver (below) configures logging instead of Celery.
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "tokenlife.refresh_due": {
                "task": "tokenlife.refresh_due",
                "schedule": settings.refresh_due_interval_seconds,
                # A tick nobody ran in time is stale: the next one claims the same work.
                "options": {"expires": max(10.0, 10 * settings.refresh_due_interval_seconds)},
            },
            "tokenlife.deliver_alerts": {
                "task": "tokenlife.deliver_alerts",
                "schedule": settings.alert_interval_seconds,
                "options": {"expires": max(10.0, 5 * settings.alert_interval_seconds)},
            },
            # Leads are days apart: every 10 minutes is on time, and one Redis SET per
            # integration with a client_secret_expires_at is nothing.
            "tokenlife.check_client_secrets": {
                "task": "tokenlife.check_client_secrets",
                "schedule": 600.0,
                "options": {"expires": 600.0},
            },
        },
    }
