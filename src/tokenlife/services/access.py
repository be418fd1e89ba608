"""On demand: a valid access token now, refreshing first when it is about to expire.

Single-flight with the scheduled refresh: both hold the connection's lock, so a token
is refreshed once however many callers ask at the same moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tokenlife.adapters.locks import Locks
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.integration import Integration
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.policy import Status
from tokenlife.core.refresh_timing import needs_refresh
from tokenlife.errors import (
    ReauthorizationRequiredError,
    TransientError,
)
from tokenlife.services.refresh import Outcome, Refresher

# How often a caller that found the lock taken looks again, and for how long.
_LOCK_POLL_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class AccessToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: float | None


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._integrations = integrations
        self._store = store
        self._locks = locks
        self._refresher = refresher
        self._leeway = leeway
        self._wait = wait_seconds
        self._clock = clock

    async def get(self, integration_name: str, connection_id: str) -> AccessToken:
        integration = require_integration(self._integrations, integration_name)
        deadline = self._clock() + self._wait
        while True:
            if self._clock() > deadline:
                raise TransientError("timed out waiting for a refresh in progress")
            connection, tokens = await self._store.load(integration_name, connection_id)
            now = self._clock()
            if connection.status is Status.REAUTHORIZATION_REQUIRED:
                raise ReauthorizationRequiredError(
                    integration_name, connection_id, connection.last_error or "status"
                )
            fresh = not needs_refresh(
                expires_at=tokens.expires_at, lifetime_seconds=tokens.lifetime_seconds,
                leeway=self._leeway, now=now,
            )  # fmt: skip
            if fresh or tokens.refresh_token is None:
                if tokens.expires_at is not None and tokens.expires_at <= now:
                    raise ReauthorizationRequiredError(
                        integration_name, connection_id, "access token expired, no refresh token"
                    )
                return AccessToken(tokens.access_token, tokens.token_type, tokens.expires_at)
            lock = await self._locks.acquire(integration_name, connection_id)
            if lock is None:
                # Someone is refreshing it right now: wait for them, then read again.
                await asyncio.sleep(_LOCK_POLL_SECONDS)
                continue
            try:
                connection, tokens = await self._store.load(integration_name, connection_id)
                still_stale = tokens.refresh_token is not None and needs_refresh(
                    expires_at=tokens.expires_at, lifetime_seconds=tokens.lifetime_seconds,
                    leeway=self._leeway, now=self._clock(),
                )  # fmt: skip
                if still_stale and connection.status is not Status.REAUTHORIZATION_REQUIRED:
                    assert tokens.refresh_token is not None
                    result = await self._refresher.refresh(
                        integration, connection, tokens.refresh_token, self._clock()
                    )
                    if result.outcome is Outcome.REAUTHORIZATION_REQUIRED:
                        raise ReauthorizationRequiredError(
                            integration_name, connection_id, str(result.error)
                        ) from result.error
                    if result.outcome is Outcome.TRANSIENT_FAILURE and result.error is not None:
                        raise result.error
                    if result.outcome is Outcome.REFRESHED:
                        # What this refresh saved is the answer, even when the provider's
                        # new token is itself short (an expired JWT): no second request.
                        _, tokens = await self._store.load(integration_name, connection_id)
                        return AccessToken(
                            tokens.access_token, tokens.token_type, tokens.expires_at
                        )
            finally:
                await self._locks.release(integration_name, connection_id, lock)
