"""Thin Celery tasks: run a service call on the process loop, map errors to retry or not."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from tokenlife import logs
from tokenlife.adapters.refresh_schedule import Due
from tokenlife.adapters.tick_tally import TickTallies
from tokenlife.core.backoff import compute_backoff
from tokenlife.errors import CodeNotTakenError, StorageUnavailableError, TransientError
from tokenlife.services.callback import ExchangeAttempt, masked_reprs, summary
from tokenlife.worker import app, process_runtime

log = logging.getLogger(__name__)


@app.task(name="tokenlife.exchange_code", bind=True)
def exchange_code(
    self: Any,
    *,
    state: str,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
    iss: str | None = None,
    unsent_at: float | None = None,
) -> dict[str, Any]:
    """Exchange an authorization code; returns a JSON summary without token values.

    `iss` is the callback's RFC 9207 issuer parameter, when the provider sent one. A task
    delivered twice returns the first outcome without calling the provider again.
    `unsent_at` is set by our own retry only (CodeNotTakenError): the sent mark that run
    left although the provider can't have redeemed the code.
    """
    # Celery logs the return value and any retry's exception from this thread's context:
    # a provider's error_description that echoes the code is redacted there too.
    logs.conceal(state, code)
    # A retry is a new message: its headers mask the code and state as the first one did.
    hidden = masked_reprs(dict(self.request.kwargs or {}))
    process = process_runtime()
    settings = process.runtime.config.settings
    retries: int = self.request.retries
    attempt = ExchangeAttempt(
        attempt_id=str(self.request.id),
        number=retries + 1,
        final=retries >= settings.exchange_max_retries,
        unsent_at=unsent_at if isinstance(unsent_at, int | float) else None,
    )
    try:
        return process.run(
            process.runtime.exchange.exchange_code(
                state=state,
                code=code,
                error=error,
                error_description=error_description,
                attempt=attempt,
                now=time.time(),
                iss=iss,
            )
        )
    except StorageUnavailableError as exc:
        if attempt.final:
            # No event can be written while Redis is down. A redelivery of this task
            # (the broker's visibility timeout) still ends in exchange.failed.
            log.error("exchange gave up: Redis unavailable after %d attempts: %s",
                      attempt.number, exc)  # fmt: skip
            return summary(None, None, outcome="failed", error=exc.error,
                           error_description=str(exc))  # fmt: skip
        raise self.retry(
            exc=exc, countdown=_countdown(retries, exc), max_retries=None, **hidden
        ) from None
    except CodeNotTakenError as exc:
        # The message carries what Redis may have failed to record: the mark to ignore.
        again = {**self.request.kwargs, "unsent_at": exc.unsent_at}
        raise self.retry(
            exc=exc,
            kwargs=again,
            countdown=_countdown(retries, exc),
            max_retries=None,
            **masked_reprs(again),
        ) from None
    except TransientError as exc:
        raise self.retry(
            exc=exc, countdown=_countdown(retries, exc), max_retries=None, **hidden
        ) from None


def _countdown(retries: int, exc: TransientError) -> float:
    settings = process_runtime().runtime.config.settings
    return compute_backoff(
        retries,
        base=settings.exchange_retry_base_seconds,
        cap=settings.exchange_retry_max_seconds,
        jitter=random.random(),
        # A user is waiting and the claim on the state expires: honour Retry-After
        # only up to our own cap.
        retry_after=None
        if exc.retry_after is None
        else min(exc.retry_after, settings.exchange_retry_max_seconds),
    )


@app.task(name="tokenlife.refresh_due", ignore_result=True)
def refresh_due() -> int:
    """Beat's tick: claim what is due and hand it out in batches; returns how many."""
    process = process_runtime()
    settings = process.runtime.config.settings
    batches = process.run(
        process.runtime.engine.claim_batches(
            lease_seconds=settings.refresh_lease_seconds,
            limit=settings.refresh_claim_limit,
            batch_size=settings.refresh_batch_size,
        )
    )
    for batch in batches:
        refresh_batch.delay([[d.integration, d.connection_id, d.due_at] for d in batch])
    claimed = sum(len(b) for b in batches)
    now = time.time()
    process.run(process.runtime.schedule.tick(now, claimed))
    # One INFO line a period for the fleet instead of Celery's three a tick (DEBUG now);
    # nothing to count, and no Redis write a tick, when nobody reads INFO.
    if not log.isEnabledFor(logging.INFO):
        return claimed
    tallies = TickTallies(process.runtime.redis, process.runtime.keys)
    period = settings.log_summary_seconds
    summary = process.run(tallies.count(now, period, claimed=claimed, batches=len(batches)))
    if summary is not None:
        with logs.unbound():  # about every tick of the period, not this task's
            logs.get_logger(__name__).info(
                "refresh ticks: {ticks} run, {claimed} connections claimed in {batches} "
                "batches over {seconds:.0f} s".format(**summary),
                **summary,
            )
    return claimed


@app.task(name="tokenlife.refresh_batch", ignore_result=True, acks_late=True)
def refresh_batch(items: list[list[Any]], asked: bool = False) -> dict[str, int]:
    """Refresh up to `refresh_batch_size` connections concurrently on the process loop;
    `asked`: queued by someone who wants it now (web/refresh_queue.py), never held by a
    provider's breaker."""
    batch = [_due(item) for item in items]
    process = process_runtime()
    engine = process.runtime.engine
    outcomes = process.run(engine.refresh_batch(batch, time.time, asked=asked is True))
    log.info("refresh batch of %d: %s", len(batch), dict(outcomes))
    return dict(outcomes)


def _due(item: list[Any]) -> Due:
    # Messages come from our own beat, but a queue is an input like any other.
    if (
        not isinstance(item, list | tuple)
        or len(item) != 3
        or not all(isinstance(x, str) for x in item[:2])
        or not isinstance(item[2], int | float)
    ):
        raise ValueError(f"malformed refresh item: {item!r}")
    return Due(item[0], item[1], float(item[2]))


@app.task(name="tokenlife.deliver_alerts", ignore_result=True)
def deliver_alerts() -> dict[str, int]:
    """Beat's tick for alerts: one delivery run (runs never overlap across the fleet)."""
    process = process_runtime()
    totals = process.run(process.runtime.alert_delivery().run_once(time.time()))
    if totals.get("sent") or totals.get("dead_lettered"):
        log.info("alert delivery: %s", dict(totals))
    return dict(totals)


@app.task(name="tokenlife.check_client_secrets", ignore_result=True)
def check_client_secrets() -> list[str]:
    """Beat's tick for client secrets that expire: each alert.client_secret_expiring (30, 7
    and 1 days ahead) once; returns the integrations alerted."""
    process = process_runtime()
    integrations = list(process.runtime.config.integrations.values())
    secrets, now = process.runtime.secrets, time.time()
    alerted = process.run(secrets.check_expiring(integrations, now))
    if alerted:
        log.info("client secrets expiring: %s", ", ".join(alerted))
    # While a secret is refused as expired, one connection per integration probes.
    probed = process.run(secrets.probe(integrations, now))
    if probed:
        log.info("client secrets refused as expired, probing: %s", ", ".join(probed))
    return alerted
