"""Ending a connection: revoke at the provider (RFC 7009) when it can, then forget it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from tokenlife import logs
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.locks import Locks
from tokenlife.adapters.token_endpoint import post_revocation
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events
from tokenlife.core.grants import revocation_request
from tokenlife.core.integration import Integration
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import (
    ConnectionBusyError,
    CorruptRecordError,
    DecryptionError,
    TokenlifeError,
    UnknownConnectionError,
)
from tokenlife.services.deadlines import check_deadline

log = logging.getLogger(__name__)
_LOCK_POLL_SECONDS = 0.05


class ConnectionRemoval:
    def __init__(
        self,
        *,
        integrations: Mapping[str, Integration],
        store: TokenStore,
        locks: Locks,
        events_: EventStream,
        http: aiohttp.ClientSession,
        http_timeout: float,
        lock_wait_seconds: float,
    ) -> None:
        self._integrations = integrations
        self._store = store
        self._locks = locks
        self._events = events_
        self._http = http
        self._timeout = http_timeout
        self._lock_wait = lock_wait_seconds

    async def delete(self, integration_name: str, connection_id: str, now: float) -> dict[str, Any]:
        """Under the connection's lock: a refresh that rotates at the same moment either
        ends before (and its new token is the one revoked) or starts after (and finds
        the connection gone), so no live token is left at the provider."""
        integration = require_integration(self._integrations, integration_name)
        lock = await self._acquire(integration_name, connection_id)
        try:
            return await self._delete(integration, connection_id, now)
        finally:
            await self._locks.release(integration_name, connection_id, lock)

    async def _acquire(self, integration: str, connection_id: str) -> str:
        """The connection's lock, waiting a bounded time for a refresh in progress."""
        deadline = asyncio.get_running_loop().time() + self._lock_wait
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    lock = await self._locks.acquire(integration, connection_id)
                    if lock is not None:
                        return lock
                    check_deadline(deadline)
                    await asyncio.sleep(_LOCK_POLL_SECONDS)
        except TimeoutError:
            raise ConnectionBusyError(
                "a refresh of this connection is in progress; try again", retry_after=5.0
            ) from None

    async def _delete(
        self, integration: Integration, connection_id: str, now: float
    ) -> dict[str, Any]:
        integration_name = integration.name
        logs.bind_connection(integration_name, connection_id, integration.provider)
        supported = integration.revocation_url is not None
        revoked, problem, unreadable = False, None, None
        provider = integration.provider
        try:
            connection = await self._store.get(integration_name, connection_id)
            provider = connection.provider
            if supported:
                tokens = await self._store.tokens(integration_name, connection_id)
        except (CorruptRecordError, DecryptionError) as exc:
            # The record can't be read, so nothing can be revoked; deleting it is the
            # way out its 404 promises ("delete it and connect again").
            unreadable = unreadable_reason(exc)
            log.warning("deleting unreadable %s/%s without revocation: %s",
                        integration_name, connection_id, type(exc).__name__)  # fmt: skip
        else:
            if supported:
                revoked, problem = await self._revoke(integration, connection_id, tokens)
        if not await self._store.delete(integration_name, connection_id, provider):
            raise UnknownConnectionError(f"no connection {connection_id!r} in {integration_name!r}")
        outcome = revocation_outcome(supported, revoked, problem, unreadable)
        await self._events.emit(
            events.CONNECTION_DELETED, integration_name, connection_id, now,
            provider=integration.provider, **outcome,
        )  # fmt: skip
        return {"deleted": True, **outcome}

    async def _revoke(
        self, integration: Integration, connection_id: str, tokens: TokenSet
    ) -> tuple[bool, str | None]:
        # Revoking the refresh token ends the whole grant at most vendors (RFC 7009 §2.1).
        token, hint = (
            (tokens.refresh_token, "refresh_token") if tokens.refresh_token
            else (tokens.access_token, "access_token")
        )  # fmt: skip
        logs.conceal(token)
        try:
            await post_revocation(
                self._http, revocation_request(integration, token, hint), self._timeout
            )
        except TokenlifeError as exc:
            # The tokens are deleted anyway: keeping them would not make revoking work.
            log.warning("revocation of %s/%s failed: %s", integration.name, connection_id, exc)
            return False, str(exc)
        return True, None


def unreadable_reason(exc: CorruptRecordError | DecryptionError) -> str:
    """Why a connection was deleted without revoking anything (no value is named)."""
    what = (
        "its stored record is incomplete or unreadable"
        if isinstance(exc, CorruptRecordError)
        else "its stored tokens can't be decrypted with the configured keys"
    )
    return (
        f"not revoked: {what}; the grant stays valid at the provider until it expires "
        "or the user removes the app"
    )


NO_REVOCATION_ENDPOINT = (
    "the provider has no revocation endpoint (none in the catalogue, the integration or its "
    "discovery document); the grant stays valid at the provider until it expires or the "
    "user removes the app"
)


def revocation_outcome(
    supported: bool, revoked: bool, error: str | None, unreadable: str | None = None
) -> dict[str, Any]:
    """What the DELETE answer and `connection.deleted` say about revocation: `revoked`
    false never reads as success, `revocation_reason` says why nothing was revoked
    (`unreadable`: the record or its tokens could not be read, so nothing was tried)."""
    if revoked:
        reason = None
    elif unreadable:
        reason = unreadable
    else:
        reason = error if supported else NO_REVOCATION_ENDPOINT
    return {
        "revoked": revoked,
        "revocation_supported": supported,
        "revocation_reason": reason,
        "revocation_error": error,
    }
