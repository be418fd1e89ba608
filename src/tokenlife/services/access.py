"""On demand: a valid access token now, refreshing first when it is about to expire.

Single-flight with the scheduled refresh: both claim the connection (its lock and one of
its provider's concurrency slots), so a token is refreshed once however many callers ask
at the same moment, and an on-demand storm can't exceed the provider's limit. The whole
call is bounded by `wait_seconds` (below the documented client timeout): past it the
caller gets a TransientError with a Retry-After, while a refresh already sent runs on and
saves what the provider answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from tokenlife import logs
from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.fleet_metrics import latency_fields
from tokenlife.adapters.locks import Claim, Lease, Locks
from tokenlife.adapters.outcome_counters import Counters, on_demand_fields
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.integration import Integration
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.policy import Status
from tokenlife.core.refresh_refusal import RefusalKind
from tokenlife.core.refresh_timing import needs_refresh
from tokenlife.errors import ReauthorizationRequiredError
from tokenlife.models import AccessToken
from tokenlife.services.deadlines import check_deadline
from tokenlife.services.refresh import Outcome, Refresher, Result
from tokenlife.services.refresh_answer import RETRY_AFTER_SECONDS, raise_unless_fresh, transient

# How often a caller that found the lock or every slot taken looks again.
_POLL_SECONDS = 0.02


class AccessTokens:
    def __init__(
        self,
        *,
        integrations: Mapping[str, Integration],
        store: TokenStore,
        locks: Locks,
        refresher: Refresher,
        leeway: float,
        wait_seconds: float,
        provider_concurrency: int,
        counters: Counters | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._integrations = integrations
        self._store = store
        self._locks = locks
        self._refresher = refresher
        self._leeway = leeway
        self._wait = wait_seconds
        self._slots = provider_concurrency
        self._counters = counters
        self._clock = clock
        self._background: set[asyncio.Task[Any]] = set()

    async def get(self, integration_name: str, connection_id: str) -> AccessToken:
        integration = require_integration(self._integrations, integration_name)
        logs.bind_connection(integration_name, connection_id, integration.provider)
        deadline = asyncio.get_running_loop().time() + self._wait
        try:
            async with asyncio.timeout_at(deadline):
                return await self._get(integration, connection_id, deadline)
        except TimeoutError:
            raise transient(
                f"no token within {self._wait:g} s (a refresh is in progress, the provider "
                "is slow or storage is unavailable); try again",
                RETRY_AFTER_SECONDS,
            ) from None

    async def _get(
        self, integration: Integration, connection_id: str, deadline: float
    ) -> AccessToken:
        name = integration.name
        while True:
            check_deadline(deadline)
            connection, tokens = await self._store.load(name, connection_id)
            logs.conceal(tokens.access_token, tokens.refresh_token)
            now = self._clock()
            # The rule POST /refresh and the dashboard answer by (core.refresh_refusal):
            # re-authorization needed, or lapsed without a refresh token.
            refusal = connection.refresh_refusal(now)
            if refusal is not None and refusal.kind is RefusalKind.REAUTHORIZATION_REQUIRED:
                raise ReauthorizationRequiredError(name, connection_id, refusal.reason)
            fresh = not needs_refresh(
                expires_at=tokens.expires_at, lifetime_seconds=tokens.lifetime_seconds,
                leeway=self._leeway, now=now,
            )  # fmt: skip
            if fresh or tokens.refresh_token is None:
                return AccessToken(tokens.access_token, tokens.token_type, tokens.expires_at)
            # Gone or damaged since it was read above: raised as for the CLI's refresh.
            claim = await self._locks.claim_for_caller(integration, connection_id, self._slots)
            if claim is None:
                # Someone is refreshing it, or the provider has all the refreshes it may
                # take: wait for them, then read again.
                await asyncio.sleep(_POLL_SECONDS)
                continue
            assert claim.connection is not None and claim.lease is not None
            try:
                token = await self._claimed(integration, claim.connection, claim)
            except BaseException:
                # The bound ran out (or Redis failed): give the lease back without making
                # the caller wait on Redis again; a no-op once a refresh owns it.
                self._give_back_later(claim.lease)
                raise
            await self._locks.give_back(claim.lease)
            if token is not None:
                return token

    async def wait_background(self, timeout: float | None = None) -> bool:
        """Let leases given back after a cancelled call be released (at shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # Again until none is left: a refresh that ends meanwhile starts its count.
        while self._background:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            _, pending = await asyncio.wait(set(self._background), timeout=left)
            if pending:
                return False
        return True

    def _give_back_later(self, lease: Lease) -> None:
        if lease.released or lease.handed_over:
            return
        self._keep(asyncio.ensure_future(self._locks.give_back(lease)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        """Referenced until done, and waited for by wait_background."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # Redis away: the lock and the slot expire by themselves (a refresh logs its own).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _count(self, done: asyncio.Task[Result], integration: Integration, started: float) -> None:
        if self._counters is None or done.cancelled() or done.exception() is not None:
            return  # a crash is logged by the refresher; there is no outcome to count
        provider = integration.provider
        latency = latency_fields(provider, self._clock() - started)
        fields = on_demand_fields(provider, done.result().outcome.value, latency)
        self._keep(asyncio.ensure_future(self._counters.add(fields)))

    async def _claimed(
        self, integration: Integration, connection: Connection, claim: Claim
    ) -> AccessToken | None:
        """Refresh under the claim when it is still needed; None: read again."""
        still_stale = claim.refresh_ciphertext is not None and needs_refresh(
            expires_at=connection.expires_at, lifetime_seconds=connection.lifetime_seconds,
            leeway=self._leeway, now=self._clock(),
        )  # fmt: skip
        if not still_stale or connection.status is Status.REAUTHORIZATION_REQUIRED:
            return None
        assert claim.refresh_ciphertext is not None
        refresh_token = self._store.decrypt(claim.refresh_ciphertext)
        started = self._clock()
        # Its own task, so a refresh whose caller gave up is counted when it ends too; the
        # count is written after the answer, never in the caller's way.
        refreshing = asyncio.ensure_future(
            self._refresher.refresh(integration, connection, refresh_token, started, claim.lease)
        )
        refreshing.add_done_callback(lambda done: self._count(done, integration, started))
        self._keep(refreshing)
        result = await asyncio.shield(refreshing)
        raise_unless_fresh(result, integration.name, connection.connection_id)
        if result.outcome is Outcome.REFRESHED and result.tokens is not None:
            # What this refresh saved is the answer, even when the provider's new token
            # is itself short (an expired JWT): no second request.
            tokens = result.tokens
            return AccessToken(tokens.access_token, tokens.token_type, tokens.expires_at)
        return None
