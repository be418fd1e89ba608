"""What an operator does to connections from the CLI: list them, and refresh one now,
in this process, through the same claim and Refresher a scheduled refresh uses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.connection_scan import ConnectionScan
from tokenlife.adapters.locks import Claim, Locks
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.integration import Integration
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.policy import Status
from tokenlife.errors import ConnectionBusyError, ReauthorizationRequiredError
from tokenlife.services.deadlines import check_deadline
from tokenlife.services.refresh import Refresher, Result

# How often a refresh that found the lock (or every provider slot) taken looks again.
_POLL_SECONDS = 0.05


async def list_connections(
    scan: ConnectionScan, integrations: Iterable[str], now: float, status: Status | None = None
) -> list[Connection]:
    """The stored connections of `integrations`, as readers see them at `now` (effective
    status), sorted by integration then id; read as the dashboard reads them (a page per
    round trip), so deleted and unreadable records are left out alike."""
    stored, _ = await scan.read(sorted(integrations))
    found = sorted(
        (c.effective(now) for c in stored), key=lambda c: (c.integration, c.connection_id)
    )
    return [c for c in found if status is None or c.status is status]


class RefreshNow:
    """Refresh one connection now, due or not. Single-flight with the worker: it claims
    the connection's lock and a provider slot first, waiting up to `wait_seconds` for a
    refresh in progress (then ConnectionBusyError)."""

    def __init__(
        self,
        *,
        integrations: Mapping[str, Integration],
        store: TokenStore,
        locks: Locks,
        refresher: Refresher,
        provider_concurrency: int,
        wait_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._integrations = integrations
        self._store = store
        self._locks = locks
        self._refresher = refresher
        self._slots = provider_concurrency
        self._wait = wait_seconds
        self._clock = clock

    async def refresh(self, integration_name: str, connection_id: str) -> Result:
        """The outcome; ReauthorizationRequiredError when no refresh can help (the status
        says so, or there is no refresh token) without asking the provider."""
        integration = require_integration(self._integrations, integration_name)
        deadline = asyncio.get_running_loop().time() + self._wait
        try:
            async with asyncio.timeout_at(deadline):
                claim = await self._claim(integration, connection_id, deadline)
        except TimeoutError:
            raise ConnectionBusyError(
                "a refresh of this connection is in progress; try again", retry_after=5.0
            ) from None
        connection, lease = claim.connection, claim.lease
        assert connection is not None and lease is not None
        try:
            # The refusal the API and the dashboard give (core.refresh_refusal); here a
            # missing refresh token is exit 4 too: only connecting again renews it.
            refusal = connection.refresh_refusal(self._clock())
            if refusal is not None or claim.refresh_ciphertext is None:
                reason = ("no refresh token" if refusal is None
                          else f"{refusal.reason}; fix: {refusal.fix}")  # fmt: skip
                raise ReauthorizationRequiredError(integration_name, connection_id, reason)
            refresh_token = self._store.decrypt(claim.refresh_ciphertext)
        except BaseException:
            await self._locks.give_back(lease)
            raise
        # The lease is the refresh's from here on: it gives it back when it ends.
        return await self._refresher.refresh(
            integration, connection, refresh_token, self._clock(), lease
        )

    async def _claim(self, integration: Integration, connection_id: str, deadline: float) -> Claim:
        while True:
            claim = await self._locks.claim_for_caller(integration, connection_id, self._slots)
            if claim is not None:
                return claim
            check_deadline(deadline)
            await asyncio.sleep(_POLL_SECONDS)  # locked or throttled: wait for them
