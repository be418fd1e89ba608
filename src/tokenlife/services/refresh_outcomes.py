"""What a refresh writes when it ends, one method per outcome: the new tokens (retried
through a Redis outage, with an operation id so a landed attempt whose reply was lost
counts), a transient failure, a refusal, and new tokens that could not be saved."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import EventStream, new_event
from tokenlife.adapters.locks import Lease
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_store import Backoff, TokenStore
from tokenlife.core import events
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, classify, status_for
from tokenlife.core.presets import Preset
from tokenlife.core.reauthorization import diagnose_reauthorization
from tokenlife.core.refresh_timing import RetryPolicy
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import OAuthError, TokenlifeError
from tokenlife.services.durable_write import DurableWriter, WriteRetry
from tokenlife.services.refresh_failure import FailureBookkeeping
from tokenlife.services.scheduling import SchedulePolicy
from tokenlife.services.token_loss import TokenLoss

log = logging.getLogger(__name__)

_FAILURE_FIELDS = (
    "consecutive_failures", "failing_since", "refresh_failing_alerted",
    "failure_window_start", "failure_window_count", "last_error", "status_reason",
    "retry_not_before", "retry_held_by", "last_failed_at", "outcome_unknown_at",
)  # fmt: skip
# A successful refresh brings forward at most this many of the provider's waiting retries, within
# this many seconds: bounded work per success, and each of those recoveries brings more.
PULL_FORWARD_LIMIT = 20
PULL_FORWARD_SPREAD_SECONDS = 2.0
# ... and only retries of connections that last failed this long ago: a connection failing
# for a reason of its own keeps a backoff of at least this much.
PULL_FORWARD_LEAST_WAIT_SECONDS = 30.0


class Outcome(StrEnum):
    REFRESHED = "refreshed"
    TRANSIENT_FAILURE = "transient_failure"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    CONFLICT = "conflict"  # a newer version was saved meanwhile; nothing written
    SAVE_FAILED = "save_failed"  # the provider answered; Redis stayed away past the retries


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    error: TokenlifeError | None = None
    # What a REFRESHED result saved: the caller's answer without reading it back (by then a
    # delete may have removed the connection).
    tokens: TokenSet | None = None
    version: int | None = None  # the version it saved


class OutcomeWriter:
    def __init__(
        self,
        *,
        presets: Mapping[str, Preset],
        store: TokenStore,
        events_: EventStream,
        retry: RetryPolicy,
        schedule_policy: SchedulePolicy,
        schedule: RefreshSchedule | None,
        save_retry: WriteRetry,
        rng: random.Random,
    ) -> None:
        self._presets = presets
        self._events = events_
        self._schedule_policy = schedule_policy
        self._schedule = schedule
        self._rng = rng
        self._failures = FailureBookkeeping(retry, rng)
        self._writer = DurableWriter(store, save_retry, rng)
        self._write = self._writer.write
        self._loss = TokenLoss(self._writer)

    async def refreshed(
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
        next_at = self._schedule_policy.next_check(integration, new, now, sent=())
        refreshed = new_event(
            events.TOKEN_REFRESHED, connection.integration, connection.connection_id, now,
            provider=connection.provider,
            expires_at=events.iso8601(new.expires_at),
            access_token_lifetime_seconds=new.lifetime_seconds,
            refresh_token_rotated=rotated,
            next_refresh_at=events.iso8601(next_at),
        )  # fmt: skip
        try:
            written = await self._write(
                connection, "saving refreshed tokens",
                now=now, tokens=new,
                set_fields={"status": status_for(verdict).value, "verdict": verdict.value,
                            "last_refreshed_at": repr(now)},
                delete_fields=(*_FAILURE_FIELDS, "expiry_alerts_sent"),
                schedule_at=next_at, unschedule=next_at is None, event=refreshed,
                lease=lease, backoff=Backoff.REMOVE,
            )  # fmt: skip
        except Exception as exc:
            # Past the retries: the new tokens die with this process's memory.
            log.error("refresh of %s/%s: the new tokens could not be saved (%s); a rotated "
                      "refresh token may be lost", connection.integration,
                      connection.connection_id, type(exc).__name__)  # fmt: skip
            await self._loss.mark_lost(integration, connection, now, rotated)
            return Result(Outcome.SAVE_FAILED)
        if written.version is None:
            if rotated:
                await self._loss.rotation_conflict(integration, connection, now)
            else:
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
        if written.backoff_waiting:
            # The provider answers: whichever connection showed it, the others' retries
            # need not sit out their backoff (checked in the write, one ZCARD).
            await self._pull_forward(connection)
        return Result(Outcome.REFRESHED, tokens=new, version=written.version)

    async def lifetime_learned(
        self,
        integration: Integration,
        connection: Connection,
        version: int,
        learned: TokenSet,
        now: float,
        lease: Lease | None = None,
    ) -> bool:
        """The saved token set again, with the lifetime learned after the save (by
        introspection), its verdict and its schedule: a compare-and-set on `version` under
        `lease` (given back by the write), no retry, no event (token.refreshed went out with
        the save). False when a newer write got there first: it stands."""
        verdict = classify(learned, integration.minimum_access_token_only_lifetime_days)
        next_at = self._schedule_policy.next_check(integration, learned, now, sent=())
        written = await self._writer.store.write(
            replace(connection, version=version), now=now, tokens=learned,
            set_fields={"status": status_for(verdict).value, "verdict": verdict.value},
            schedule_at=next_at, unschedule=next_at is None, lease=lease,
        )  # fmt: skip
        if written.version is None:
            log.info("refresh of %s/%s: a newer write came before the introspected lifetime; "
                     "it stands", connection.integration, connection.connection_id)  # fmt: skip
        return written.version is not None

    async def _pull_forward(self, shown_by: Connection) -> None:
        """This provider answers again: its other connections' retries need not wait out
        minutes of backoff."""
        if self._schedule is None:
            return
        provider = shown_by.provider
        try:
            await self._schedule.pull_forward(
                provider,
                self._schedule.shard_of(shown_by.integration, shown_by.connection_id),
                PULL_FORWARD_LIMIT,
                PULL_FORWARD_SPREAD_SECONDS,
                self._rng,
                PULL_FORWARD_LEAST_WAIT_SECONDS,
            )
        except Exception:  # an optimisation: the retries come anyway
            log.warning("could not bring forward the retries of %s", provider, exc_info=True)

    async def transient(
        self,
        integration: Integration,
        connection: Connection,
        exc: TokenlifeError,
        now: float,
        lease: Lease | None,
        sent: bool,
        *,
        provider_degraded: bool = False,
    ) -> Result:
        plan = self._failures.plan(
            integration, connection, exc, now, request_sent=sent,
            provider_degraded=provider_degraded,
        )  # fmt: skip
        written = await self._write(
            connection, "recording a failed refresh",
            now=now, set_fields=plan.fields, schedule_at=plan.due, event=plan.alert,
            lease=lease, backoff=Backoff.ADD, delete_fields=plan.cleared,
        )  # fmt: skip
        if written.version is None:
            return Result(Outcome.CONFLICT, exc)
        unknown = ", outcome unknown" if plan.outcome_unknown else ""
        # `exc` carries the provider's description; what it echoes is redacted (log_redaction).
        log.warning("refresh of %s/%s failed (%s, attempt %s%s): %s; next try in %.0f s",
                    connection.integration, connection.connection_id, plan.fields["last_error"],
                    plan.fields["consecutive_failures"], unknown, exc, plan.due - now)  # fmt: skip
        return Result(Outcome.TRANSIENT_FAILURE, exc)

    async def permanent(
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
        written = await self._write(
            connection, "recording a refused refresh",
            now=now, unschedule=True, event=alert, lease=lease, backoff=Backoff.REMOVE,
            set_fields={"status": Status.REAUTHORIZATION_REQUIRED.value, "last_error": exc.error},
            delete_fields=("status_reason",),
        )  # fmt: skip
        if written.version is None:
            return Result(Outcome.CONFLICT, exc)
        log.warning("connection %s/%s needs re-authorization: %s",
                    connection.integration, connection.connection_id, exc)  # fmt: skip
        return Result(Outcome.REAUTHORIZATION_REQUIRED, exc)
