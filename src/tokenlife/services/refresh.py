"""Refreshing one connection: under its lock, saved by compare-and-set, failures sorted
into transient (back off, alert once when the token has lapsed) and permanent
(re-authorization required, with a diagnosis). An expired client secret is neither: one
alert for the integration, and the connections retry until the secret is replaced
(services/secret_expiry.py).

Once the request is sent it runs to its end whatever happens to the caller: the request
and its save are one task, shielded from cancellation (an API request's timeout, a
batch's), and the save is retried while Redis is away (storage_errors.py). A rotated
refresh token is only in memory until that save lands; nothing else holds it, so nothing
runs before it: a lifetime to ask the introspection endpoint for is asked afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import replace

import aiohttp

from tokenlife import logs
from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.locks import Lease, Locks
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_endpoint import post_token_request
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.grants import refresh_token_request
from tokenlife.core.integration import Integration
from tokenlife.core.presets import Preset
from tokenlife.core.reauthorization import is_permanent
from tokenlife.core.refresh_timing import RetryPolicy
from tokenlife.core.secret_expiry import names_expired_secret
from tokenlife.errors import (
    EndpointTimeoutError,
    OAuthError,
    ProviderError,
    TransientError,
    TransportError,
)
from tokenlife.services.durable_write import WriteRetry
from tokenlife.services.introspected_lifetime import learn_lifetime
from tokenlife.services.refresh_outcomes import Outcome, OutcomeWriter, Result
from tokenlife.services.scheduling import SchedulePolicy
from tokenlife.services.secret_expiry import ClientSecretWatch

log = logging.getLogger(__name__)

__all__ = ["Outcome", "Refresher", "Result"]


class Refresher:
    """Refreshes a connection whose lock the caller holds."""

    def __init__(
        self,
        *,
        presets: Mapping[str, Preset],
        store: TokenStore,
        events_: EventStream,
        http: aiohttp.ClientSession,
        http_timeout: float,
        retry: RetryPolicy,
        schedule_policy: SchedulePolicy,
        locks: Locks | None = None,
        schedule: RefreshSchedule | None = None,
        save_retry: WriteRetry | None = None,
        rng: random.Random | None = None,
        secrets: ClientSecretWatch | None = None,
    ) -> None:
        self._http = http
        self._secrets = secrets
        self._timeout = http_timeout
        self._locks = locks
        self._outcomes = OutcomeWriter(
            presets=presets, store=store, events_=events_, retry=retry,
            schedule_policy=schedule_policy, schedule=schedule,
            save_retry=save_retry or WriteRetry(), rng=rng or random.Random(),
        )  # fmt: skip
        # Refreshes whose callers went away: kept referenced until they finish.
        self._running: set[asyncio.Task[Result]] = set()

    async def refresh(
        self,
        integration: Integration,
        connection: Connection,
        refresh_token: str,
        now: float,
        lease: Lease | None = None,
        *,
        probe: bool = False,
    ) -> Result:
        """One refresh_token grant and its bookkeeping, run to the end even when the
        caller is cancelled. `lease` becomes the refresh's: given back when it ends (by
        the write, in the same round trip), never while the request may be in flight.
        A `probe` of a provider whose breaker is open raises no alert of its own when it
        fails (alert.provider_degraded tells it)."""
        if lease is not None:
            lease.handed_over = True
        task = asyncio.ensure_future(
            self._run(integration, connection, refresh_token, now, lease, probe)
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        # A caller that went away never retrieves the result: say what broke (no tokens).
        task.add_done_callback(_log_failure)
        return await asyncio.shield(task)

    async def wait_running(self, timeout: float | None = None) -> bool:
        """Let refreshes whose callers were cancelled finish (at shutdown, in tests), for
        `timeout` seconds at most; False when some were still running then."""
        if not self._running:
            return True
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        return not pending

    async def _run(
        self,
        integration: Integration,
        connection: Connection,
        refresh_token: str,
        now: float,
        lease: Lease | None,
        probe: bool,
    ) -> Result:
        try:
            return await self._request(integration, connection, refresh_token, now, lease, probe)
        finally:
            if lease is not None:
                lease.handed_over = False
                if self._locks is not None and not lease.released:
                    try:
                        await self._locks.give_back(lease)
                    except Exception:  # Redis away: the lock and slot expire by themselves
                        log.warning("could not give back the lease of %s/%s",
                                    lease.integration, lease.connection_id)  # fmt: skip

    async def _request(
        self,
        integration: Integration,
        connection: Connection,
        refresh_token: str,
        now: float,
        lease: Lease | None,
        probe: bool,
    ) -> Result:
        logs.conceal(refresh_token)
        request = refresh_token_request(integration, refresh_token)
        try:
            new = await post_token_request(self._http, request, self._timeout, now)
            logs.conceal(new.access_token, new.refresh_token, new.id_token)
        except TransientError as exc:
            sent = isinstance(exc, EndpointTimeoutError) or (
                isinstance(exc, TransportError) and exc.request_sent
            )
            return await self._outcomes.transient(
                integration, connection, exc, now, lease, sent, provider_degraded=probe
            )
        except OAuthError as exc:
            if names_expired_secret(exc.error, exc.description):
                # The secret, not the grant: re-authorizing would not help, a new secret will.
                if self._secrets is not None:
                    await self._secrets.tell_refused(integration, exc.error, exc.description, now)
                return await self._outcomes.transient(
                    integration, connection, exc, now, lease, False
                )
            if is_permanent(exc.error, integration.preset):
                return await self._outcomes.permanent(integration, connection, exc, now, lease)
            return await self._outcomes.transient(
                integration, connection, exc, now, lease, False, provider_degraded=probe
            )
        except ProviderError as exc:
            # An unusable answer (an HTML error page from a proxy, say) may not repeat.
            return await self._outcomes.transient(
                integration, connection, exc, now, lease, False, provider_degraded=probe
            )
        # Saved first, as it came: a slow or failing introspection can't hold the lock nor
        # keep a rotated refresh token in memory only. The save gives the lease back.
        result = await self._outcomes.refreshed(
            integration, connection, refresh_token, new, now, lease
        )
        # Only a connection that had failed can end an expired-secret alert (whatever its
        # latest failure: a timeout after the refusals too): no extra Redis round trip for
        # every other refresh.
        if connection.consecutive_failures and self._secrets is not None:
            await self._secrets.tell_accepted(integration, now)
        return await self._learn_lifetime(integration, connection, result, now)

    async def _learn_lifetime(
        self, integration: Integration, connection: Connection, result: Result, now: float
    ) -> Result:
        """After the save, a lifetime nobody stated, asked of the introspection endpoint
        and written by compare-and-set on the saved version, under the connection's lock
        again: a refresh that took the lock meanwhile must not find its version moved under
        it (its rotated token would be lost), so a lock taken means the lifetime is dropped
        (the next refresh asks again). Nothing here can fail the refresh."""
        saved, version = result.tokens, result.version
        if result.outcome is not Outcome.REFRESHED or saved is None or version is None:
            return result
        lease = None
        try:
            learned = await learn_lifetime(self._http, integration, saved, self._timeout, now)
            if learned is saved:
                return result
            if self._locks is not None:
                name, cid = connection.integration, connection.connection_id
                token = await self._locks.acquire(name, cid)
                if token is None:
                    log.info("refresh of %s/%s: another refresh holds the connection; the "
                             "introspected lifetime is dropped", name, cid)  # fmt: skip
                    return result
                lease = Lease(name, cid, connection.provider, token, None)
            landed = await self._outcomes.lifetime_learned(
                integration, connection, version, learned, now, lease
            )
        except Exception as exc:  # Redis away, say: the next refresh asks again
            log.warning("refresh of %s/%s: the introspected lifetime was not saved (%s)",
                        connection.integration, connection.connection_id,
                        type(exc).__name__)  # fmt: skip
            return result
        finally:
            if lease is not None and not lease.released and self._locks is not None:
                await self._locks.give_back(lease)
        return replace(result, tokens=learned) if landed else result


def _log_failure(task: asyncio.Task[Result]) -> None:
    if task.cancelled():
        log.error("a refresh was cancelled before it ended; a rotated token may be lost")
    elif (exc := task.exception()) is not None:
        log.error("a refresh crashed: %s", type(exc).__name__, exc_info=exc)
