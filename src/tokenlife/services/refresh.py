"""Refreshing one connection: under its lock, saved by compare-and-set, failures sorted
into transient (back off, alert once when the token has lapsed) and permanent
(re-authorization required, with a diagnosis)."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

import aiohttp

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import EventStream, new_event
from tokenlife.adapters.locks import Lease
from tokenlife.adapters.token_endpoint import post_token_request
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events
from tokenlife.core.grants import refresh_token_request
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, classify, status_for
from tokenlife.core.presets import Preset
from tokenlife.core.reauthorization import diagnose_reauthorization, is_permanent
from tokenlife.core.refresh_timing import FailureWindow, RetryPolicy, after_transient_failure
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import OAuthError, ProviderError, TokenlifeError, TransientError
from tokenlife.services.scheduling import SchedulePolicy

log = logging.getLogger(__name__)

_FAILURE_FIELDS = (
    "consecutive_failures", "failing_since", "refresh_failing_alerted",
    "failure_window_start", "failure_window_count", "last_error",
)  # fmt: skip


class Outcome(StrEnum):
    REFRESHED = "refreshed"
    TRANSIENT_FAILURE = "transient_failure"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    CONFLICT = "conflict"  # a newer version was saved meanwhile; nothing written


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    error: TokenlifeError | None = None


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
        rng: random.Random | None = None,
    ) -> None:
        self._presets = presets
        self._store = store
        self._events = events_
        self._http = http
        self._timeout = http_timeout
        self._retry = retry
        self._schedule = schedule_policy
        self._rng = rng or random.Random()

    async def refresh(
        self,
        integration: Integration,
        connection: Connection,
        refresh_token: str,
        now: float,
        lease: Lease | None = None,
    ) -> Result:
        """One refresh_token grant and its bookkeeping; `lease` is given back on every
        path that writes (the write does it in the same round trip)."""
        request = refresh_token_request(integration, refresh_token)
        try:
            new = await post_token_request(self._http, request, self._timeout, now)
        except TransientError as exc:
            return await self._transient(connection, exc, now, lease)
        except OAuthError as exc:
            if is_permanent(exc.error, integration.preset):
                return await self._permanent(integration, connection, exc, now, lease)
            return await self._transient(connection, exc, now, lease)
        except ProviderError as exc:
            # An unusable answer (an HTML error page from a proxy, say) may not repeat.
            return await self._transient(connection, exc, now, lease)
        return await self._refreshed(integration, connection, refresh_token, new, now, lease)

    async def _refreshed(
        self,
        integration: Integration,
        connection: Connection,
        old_refresh_token: str,
        new: TokenSet,
        now: float,
        lease: Lease | None,
    ) -> Result:
        rotated = new.refresh_token is not None and new.refresh_token != old_refresh_token
        if new.refresh_token is None:
            new = replace(new, refresh_token=old_refresh_token)  # RFC 6749 §6: keep the old
        # Providers change behaviour, so the rule is applied to every new token set.
        verdict = classify(new, integration.minimum_access_token_only_lifetime_days)
        next_at = self._schedule.next_check(integration, new, now, sent=())
        refreshed = new_event(
            events.TOKEN_REFRESHED, connection.integration, connection.connection_id, now,
            provider=connection.provider,
            expires_at=events.iso8601(new.expires_at),
            access_token_lifetime_seconds=new.lifetime_seconds,
            refresh_token_rotated=rotated,
            next_refresh_at=events.iso8601(next_at),
        )  # fmt: skip
        version = await self._store.update(
            connection,
            now=now,
            tokens=new,
            set_fields={
                "status": status_for(verdict).value,
                "verdict": verdict.value,
                "last_refreshed_at": repr(now),
            },
            delete_fields=(*_FAILURE_FIELDS, "expiry_alerts_sent"),
            schedule_at=next_at,
            unschedule=next_at is None,
            event=refreshed,
            lease=lease,
        )
        if version is None:
            log.warning("refresh of %s/%s lost a race: newer tokens were saved first",
                        connection.integration, connection.connection_id)  # fmt: skip
            return Result(Outcome.CONFLICT)
        if connection.consecutive_failures:
            await self._events.emit(
                events.CONNECTION_RECOVERED, connection.integration, connection.connection_id,
                now, provider=connection.provider,
                failed_attempts=connection.consecutive_failures,
                failing_since=events.iso8601(connection.failing_since),
            )  # fmt: skip
        return Result(Outcome.REFRESHED)

    async def _transient(
        self, connection: Connection, exc: TokenlifeError, now: float, lease: Lease | None
    ) -> Result:
        failures = connection.consecutive_failures + 1
        window = None
        if connection.failure_window_start is not None:
            window = FailureWindow(connection.failure_window_start, connection.failure_window_count)
        due, window = after_transient_failure(
            consecutive_failures=failures,
            window=window,
            policy=self._retry,
            retry_after=getattr(exc, "retry_after", None),
            jitter=self._rng.random(),
            now=now,
        )
        error = str(getattr(exc, "error", "error"))
        expires_at = connection.expires_at
        lapsed = expires_at is not None and expires_at <= now
        fields = {
            "consecutive_failures": str(failures),
            "failing_since": repr(connection.failing_since or now),
            "failure_window_start": repr(window.started_at),
            "failure_window_count": str(window.count),
            "last_error": error,
        }
        alert = None
        if lapsed and not connection.refresh_failing_alerted:
            fields["refresh_failing_alerted"] = "1"
            alert = new_event(
                events.REFRESH_FAILING, connection.integration, connection.connection_id, now,
                provider=connection.provider, error=error, error_description=str(exc),
                failing_since=events.iso8601(connection.failing_since or now),
                failed_attempts=failures, access_token_expired_at=events.iso8601(expires_at),
                next_attempt_at=events.iso8601(due),
            )  # fmt: skip
        written = await self._store.update(
            connection, now=now, set_fields=fields, schedule_at=due, event=alert, lease=lease
        )
        if written is None:
            return Result(Outcome.CONFLICT, exc)
        log.warning("refresh of %s/%s failed (%s, attempt %d); next try in %.0f s",
                    connection.integration, connection.connection_id, error, failures,
                    due - now)  # fmt: skip
        return Result(Outcome.TRANSIENT_FAILURE, exc)

    async def _permanent(
        self,
        integration: Integration,
        connection: Connection,
        exc: OAuthError,
        now: float,
        lease: Lease | None,
    ) -> Result:
        idle = None if connection.last_refreshed_at is None else now - connection.last_refreshed_at
        diagnosis = diagnose_reauthorization(
            integration.preset,
            self._presets["custom"],
            error=exc.error,
            description=exc.description,
            idle_seconds=idle,
        )
        alert = new_event(
            events.REAUTHORIZATION_REQUIRED, connection.integration, connection.connection_id,
            now, provider=connection.provider,
            message="The provider refused the refresh token; the user has to connect again.",
            error=exc.error, error_description=exc.description,
            diagnosis=[cause.as_dict() for cause in diagnosis],
        )  # fmt: skip
        version = await self._store.update(
            connection,
            now=now,
            unschedule=True,
            set_fields={"status": Status.REAUTHORIZATION_REQUIRED.value, "last_error": exc.error},
            event=alert,
            lease=lease,
        )
        if version is None:
            return Result(Outcome.CONFLICT, exc)
        log.warning(
            "connection %s/%s needs re-authorization: %s",
            connection.integration,
            connection.connection_id,
            exc.error,
        )
        return Result(Outcome.REAUTHORIZATION_REQUIRED, exc)
