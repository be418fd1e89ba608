"""Thin Celery tasks: run a service call on the process loop, map errors to retry or not."""

from __future__ import annotations

import random
import time
from typing import Any

from tokenlife.core.backoff import compute_backoff
from tokenlife.errors import TransientError
from tokenlife.services import ExchangeAttempt
from tokenlife.worker import app, process_runtime


@app.task(name="tokenlife.exchange_code", bind=True)
def exchange_code(
    self: Any,
    *,
    state: str,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> dict[str, Any]:
    """Exchange an authorization code; returns a JSON summary without token values."""
    process = process_runtime()
    settings = process.runtime.config.settings
    retries: int = self.request.retries
    attempt = ExchangeAttempt(
        attempt_id=str(self.request.id),
        number=retries + 1,
        final=retries >= settings.exchange_max_retries,
    )
    try:
        return process.run(
            process.runtime.services.exchange_code(
                state=state,
                code=code,
                error=error,
                error_description=error_description,
                attempt=attempt,
                now=time.time(),
            )
        )
    except TransientError as exc:
        countdown = compute_backoff(
            retries,
            base=settings.exchange_retry_base_seconds,
            cap=settings.exchange_retry_max_seconds,
            jitter=random.random(),  # noqa: S311 - jitter, not security
            # A user is waiting and the claim on the state expires: honour Retry-After
            # only up to our own cap.
            retry_after=None
            if exc.retry_after is None
            else min(exc.retry_after, settings.exchange_retry_max_seconds),
        )
        raise self.retry(exc=exc, countdown=countdown, max_retries=None) from None
