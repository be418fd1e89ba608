"""Queue a refresh of one connection now, for POST /api/connections/.../refresh and the
dashboard's "Refresh now": the worker does it as it does a scheduled one."""

from __future__ import annotations

import asyncio

from celery import Celery


async def queue_refresh(celery: Celery, integration: str, connection_id: str, due: float) -> None:
    """One refresh_batch of one connection (tasks.refresh_batch), at `due`
    (core.refresh_refusal.requested_due); `asked`: someone wants it now, so an open
    breaker of its provider does not hold it. Publishing is blocking broker I/O: a thread."""
    await asyncio.to_thread(
        celery.send_task, "tokenlife.refresh_batch",
        args=[[[integration, connection_id, due]]], kwargs={"asked": True},
    )  # fmt: skip
