"""An exchange run in this process, for an app that receives the OAuth callback itself
(`Tokenlife.exchange_callback`): what the worker's `tokenlife.exchange_code` task does,
with the retries Celery would schedule done here, within a bound a waiting user accepts.

Replay safety is the task's (services/exchange.py): the code is never sent twice. A
second call with the same state while the first runs in this process waits for the
first's exchange and gets its summary; while an attempt elsewhere (the worker, another
process) holds the state, it waits for that one's outcome within the bound, and past it
gets `outcome="in_progress"` (ask again later), never a false `invalid_state`. Once the
exchange has ended, every call gets its summary.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from tokenlife import logs
from tokenlife.core.backoff import compute_backoff
from tokenlife.errors import CodeNotTakenError, StorageUnavailableError, TransientError
from tokenlife.services.callback import ExchangeAttempt, summary
from tokenlife.services.exchange import ExchangeService

log = logging.getLogger(__name__)

# How often a call looks again while another process's attempt holds its state.
OWNER_POLL_SECONDS = 0.2


class ExchangeNow:
    def __init__(
        self,
        *,
        exchange: ExchangeService,
        max_retries: int,
        retry_base_seconds: float,
        retry_max_seconds: float,
        wait_seconds: float,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._exchange = exchange
        self._max_retries = max_retries
        self._base = retry_base_seconds
        self._cap = max(retry_max_seconds, retry_base_seconds)
        self._wait = wait_seconds
        self._clock = clock
        self._jitter = jitter
        self._running: set[asyncio.Task[dict[str, Any]]] = set()
        self._by_state: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def exchange(
        self,
        *,
        state: str,
        code: str | None,
        error: str | None,
        error_description: str | None,
        iss: str | None,
    ) -> dict[str, Any]:
        """The task's summary (services/callback.summary): never a token value.

        Runs to its end even when the caller is cancelled or gives up: once the code is
        sent, the tokens it brings must be stored (a later call with the same state then
        gets the summary)."""
        logs.conceal(state, code)
        running = self._by_state.get(state)
        if running is None:
            running = asyncio.ensure_future(
                self._attempts(state, code, error, error_description, iss)
            )
            self._running.add(running)
            self._by_state[state] = running
            running.add_done_callback(self._running.discard)
            running.add_done_callback(lambda _: self._by_state.pop(state, None))
        return await asyncio.shield(running)

    async def wait_running(self, timeout: float) -> bool:
        """Let exchanges in progress end (at shutdown); False if some did not in time."""
        if not self._running:
            return True
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        return not pending

    async def _attempts(
        self,
        state: str,
        code: str | None,
        error: str | None,
        error_description: str | None,
        iss: str | None,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        attempt_id = f"in-process-{uuid.uuid4().hex}"
        retries, unsent_at, final = 0, None, self._max_retries == 0
        while True:
            attempt = ExchangeAttempt(attempt_id, retries + 1, final, unsent_at, True)
            try:
                result = await self._exchange.exchange_code(
                    state=state, code=code, error=error, error_description=error_description,
                    attempt=attempt, now=self._clock(), iss=iss,
                )  # fmt: skip
                left = deadline - loop.time()
                if result["outcome"] != "in_progress" or left <= 0:
                    return result
                # Another process's attempt holds the state: its outcome, once stored, is
                # every caller's; look again shortly.
                await asyncio.sleep(min(OWNER_POLL_SECONDS, left))
                continue
            except StorageUnavailableError as exc:
                if final:
                    # As the task ends (tasks.exchange_code): nothing can be written now.
                    log.error("exchange gave up: Redis unavailable after %d attempts: %s",
                              attempt.number, exc)  # fmt: skip
                    return summary(None, None, outcome="failed", error=exc.error,
                                   error_description=str(exc))  # fmt: skip
                failure: TransientError = exc
            except CodeNotTakenError as exc:
                unsent_at, failure = exc.unsent_at, exc
            except TransientError as exc:
                failure = exc
            delay = compute_backoff(
                retries, base=self._base, cap=self._cap, jitter=self._jitter(),
                retry_after=None if failure.retry_after is None
                else min(failure.retry_after, self._cap),
            )  # fmt: skip
            retries += 1
            left = deadline - loop.time()
            # The last attempt ends the exchange either way (the service returns a failed
            # summary then): when the retries are spent or the next wait passes the bound.
            final = retries >= self._max_retries or delay >= left
            await asyncio.sleep(max(0.0, min(delay, left)))
