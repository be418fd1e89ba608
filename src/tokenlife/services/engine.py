"""The scheduled refresh: claim due connections, refresh a batch concurrently.

A connection comes due once per due time: the claim hands it out with the due time it
had, and a refresh only runs when the connection's stored `next_refresh_at` still says
so. A batch that was delivered twice, or a lease that ran out while the batch waited in
the queue, finds the connection already rescheduled and leaves it alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from tokenlife import logs
from tokenlife.adapters.connection_write import Backoff
from tokenlife.adapters.fleet_metrics import latency_fields
from tokenlife.adapters.locks import Claim, ClaimKind, Locks
from tokenlife.adapters.outcome_counters import UNKNOWN_PROVIDER
from tokenlife.adapters.refresh_schedule import Due, RefreshSchedule
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.integration import Integration
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.policy import Status
from tokenlife.core.provider_breaker import breaker_scope, failure_kind
from tokenlife.errors import (
    DecryptionError,
    IntegrationUnavailableError,
    UnknownIntegrationError,
)
from tokenlife.services.expiry import ExpiryWatch
from tokenlife.services.provider_health import ProviderHealth, Tally
from tokenlife.services.refresh import Refresher

log = logging.getLogger(__name__)

# A refresh token no configured key decrypts is looked at again this often.
_UNDECRYPTABLE_RETRY_SECONDS = 3600.0
# Two due times closer than this are the same (they went through repr() and Redis).
_SAME_TIME = 1e-6
# A token-less status a held refresh leaves alone: it says more than "held" would.
_HELD_KEEPS = frozenset({"client_secret_expired", "refresh_failing", "provider_degraded"})


@dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: str
    # How long the token request and its save took, when one was made.
    seconds: float | None = None
    error: BaseException | None = None
    probe: bool = False
    # A token request went to the provider: what it says counts for the host's breaker.
    sent: bool = False


class RefreshEngine:
    def __init__(
        self,
        *,
        integrations: Mapping[str, Integration],
        store: TokenStore,
        schedule: RefreshSchedule,
        locks: Locks,
        refresher: Refresher,
        expiry: ExpiryWatch,
        provider_concurrency: int,
        health: ProviderHealth | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._integrations = integrations
        self._store = store
        self._schedule = schedule
        self._locks = locks
        self._refresher = refresher
        self._expiry = expiry
        self._concurrency = provider_concurrency
        self._health = health
        self._rng = rng or random.Random()

    async def claim_batches(
        self, *, lease_seconds: float, limit: int, batch_size: int
    ) -> list[list[Due]]:
        """What is due by Redis's clock, each leased for at most `lease_seconds` and at
        most half the time its token has left (claim_due.lua)."""
        claimed = await self._schedule.claim_due(lease_seconds, limit)
        return [claimed[i : i + batch_size] for i in range(0, len(claimed), batch_size)]

    async def refresh_batch(
        self, batch: Sequence[Due], clock: Callable[[], float], *, asked: bool = False
    ) -> Counter[str]:
        """Refresh concurrently on this loop; one failure never stops the others. `asked`:
        someone wants these now (POST /refresh, "Refresh now"): no breaker holds them."""
        results = await asyncio.gather(
            *(self._attempt(due, clock, asked) for due in batch), return_exceptions=True
        )
        outcomes: Counter[str] = Counter()
        # Outcome counts and latency buckets, added to the counters in one round trip.
        totals: Counter[str] = Counter()
        # By integration and minute, for the dashboard's last hour (and a key's own view).
        minute: Counter[str] = Counter()
        # What the batch says about each provider host, for its circuit breaker.
        tallies: dict[str, Tally] = {}
        for due, attempt in zip(batch, results, strict=True):
            seconds = None
            if isinstance(attempt, BaseException):
                if not isinstance(attempt, Exception):
                    raise attempt
                # Logged from the batch, outside the connection's own task: bind it here.
                with structlog.contextvars.bound_contextvars(
                    integration=due.integration, connection_id=due.connection_id
                ):
                    log.exception("refresh of %s/%s crashed", due.integration,
                                  due.connection_id, exc_info=attempt)  # fmt: skip
                result = "crashed"
            else:
                result, seconds = attempt.outcome, attempt.seconds
            outcomes[result] += 1
            integration = self._integrations.get(due.integration)
            provider = integration.provider if integration else UNKNOWN_PROVIDER
            if integration is not None and not isinstance(attempt, BaseException) and attempt.sent:
                kind = failure_kind(attempt.outcome, attempt.error)
                if kind is not None:
                    scope = breaker_scope(integration.token_url)
                    tallies.setdefault(scope, Tally()).add(kind, attempt.probe)
            totals[f"refresh:{provider}:{result}"] += 1
            minute[f"{due.integration}:{result}"] += 1
            if seconds is not None:
                totals.update(latency_fields(provider, seconds))
        now = clock()
        await self._schedule.count(dict(totals), dict(minute), now)
        if self._health is not None and tallies:
            await self._health.observe(tallies, now)
        return outcomes

    async def _attempt(self, due: Due, clock: Callable[[], float], asked: bool) -> _Attempt:
        # Each due connection runs in its own asyncio task (gather): its own log context.
        logs.bind_connection(due.integration, due.connection_id)
        try:
            integration = require_integration(self._integrations, due.integration)
        except (UnknownIntegrationError, IntegrationUnavailableError) as exc:
            # Left leased: it comes back when the integration is configured (or its
            # discovery succeeds) again.
            log.warning("due connection %s/%s: %s", due.integration, due.connection_id, exc)
            unavailable = isinstance(exc, IntegrationUnavailableError)
            return _Attempt("integration_unavailable" if unavailable else "unknown_integration")
        logs.bind_connection(due.integration, due.connection_id, integration.provider)
        hold = None if asked or not self._health else self._health.hold(integration, clock())
        claim = await self._locks.claim(
            due.integration, due.connection_id, integration.provider, self._concurrency,
            integration.preset.facts.refresh_token_reuse_grace_seconds, hold,
        )  # fmt: skip
        if claim.kind is ClaimKind.THROTTLED:
            # The provider has all the refreshes it may take; try again in a moment,
            # without counting a failure.
            await self._schedule.reschedule(
                due.integration, due.connection_id, clock() + 1 + self._rng.random()
            )
        elif claim.kind is ClaimKind.GONE:
            await self._schedule.forget(due.integration, due.connection_id)
        elif claim.kind is ClaimKind.CORRUPT:
            # Off the schedule, so it's logged once; DELETE removes it (and its 404 says so).
            await self._schedule.forget(due.integration, due.connection_id)
            log.warning("due connection %s/%s: its stored record is half-written or "
                        "unreadable; taken off the schedule", due.integration,
                        due.connection_id)  # fmt: skip
            return _Attempt("corrupt_record")
        elif claim.kind is ClaimKind.HELD:
            return await self._held(claim, clock())
        if claim.kind is not ClaimKind.OK:
            # "locked": an on-demand refresh holds it; it reschedules
            return _Attempt(claim.kind.value)
        assert claim.connection is not None and claim.lease is not None
        try:
            return await self._claimed(integration, due, claim, clock)
        finally:
            # A no-op when a write gave it back, or while a refresh owns it (this batch
            # was cancelled; the refresh runs on and gives it back when it ends).
            await self._locks.give_back(claim.lease)

    async def _held(self, claim: Claim, now: float) -> _Attempt:
        """Its host's breaker is open (the claim moved it on the schedule already): once its
        access token has lapsed, its status says so, written under the lock the claim kept
        for it, so a refresh asked for meanwhile never saves on a version this moves."""
        connection, lease = claim.connection, claim.lease
        assert connection is not None and lease is not None
        lapsed = connection.expires_at is not None and connection.expires_at <= now
        keeps = connection.status is Status.DEGRADED and connection.status_reason in _HELD_KEEPS
        try:
            if lapsed and connection.status in (Status.ACTIVE, Status.DEGRADED) and not keeps:
                fields = {"status": Status.DEGRADED.value, "status_reason": "provider_degraded"}
                await self._store.update(connection, now=now, lease=lease, set_fields=fields)
        finally:
            await self._locks.give_back(lease)  # a no-op once the write gave it back
        return _Attempt("held")

    async def _claimed(
        self, integration: Integration, due: Due, claim: Claim, clock: Callable[[], float]
    ) -> _Attempt:
        connection, lease = claim.connection, claim.lease
        assert connection is not None and lease is not None
        now = clock()
        stored_due = connection.next_refresh_at
        if stored_due is not None and stored_due > due.due_at + _SAME_TIME:
            # Refreshed and rescheduled since this claim: back to its own due time (the
            # claim moved it closer, in case this refresh never ended).
            await self._schedule.reschedule(due.integration, due.connection_id, stored_due)
            return _Attempt("not_due")
        if connection.status is Status.REAUTHORIZATION_REQUIRED:
            # Unscheduling also takes it out of the provider's backoff set.
            await self._store.update(connection, now=now, unschedule=True, lease=lease)
            return _Attempt("reauthorization_required")
        if claim.refresh_ciphertext is None:
            return _Attempt(await self._expiry.check(connection, now, lease))
        try:
            refresh_token = self._store.decrypt(claim.refresh_ciphertext)
            logs.conceal(refresh_token)
        except DecryptionError:
            # The key that wrote it is gone from TOKENLIFE_ENCRYPTION_KEYS: retrying every
            # lease can't help, but putting the key back should, so look again hourly.
            log.error("refresh of %s/%s: no configured key decrypts its refresh token; "
                      "next look in an hour", due.integration, due.connection_id)  # fmt: skip
            await self._store.update(
                connection, now=now, set_fields={"last_error": "undecryptable"},
                schedule_at=now + _UNDECRYPTABLE_RETRY_SECONDS, lease=lease,
                backoff=Backoff.REMOVE,  # no provider recovery pulls it forward
            )  # fmt: skip
            return _Attempt("undecryptable")
        result = await self._refresher.refresh(
            integration, connection, refresh_token, now, lease, probe=claim.probe
        )
        return _Attempt(result.outcome.value, clock() - now, result.error, claim.probe, sent=True)
