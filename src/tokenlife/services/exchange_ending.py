"""How an exchange ends (the connection stored, the account change refused, or
`exchange.failed`), and whether its code may be sent again.

A code works once (RFC 6749 §4.1.2). Once the request may have reached the provider, the
code is never sent again: a retry could only be refused (`invalid_grant`), and some
providers revoke what the first redemption issued when a code comes back (§4.1.2: "SHOULD
revoke (when possible) all tokens previously issued based on that authorization code").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenlife.adapters.exchange_store import Authorized, ExchangeStore, SaveOutcome
from tokenlife.adapters.outcome_counters import (
    UNKNOWN_PROVIDER,
    Counters,
    ExchangeOutcome,
    exchange_field,
)
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.storage_errors import retry_while_unavailable
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.authorization_errors import bounded, clean_error, diagnose_refusal
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Verdict, classify, status_for
from tokenlife.core.presets import Preset
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import EndpointTimeoutError, TransientError, TransportError
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange_events import (
    SUBJECT_MISMATCH,
    SUBJECT_UNKNOWN,
    authorized_events,
    failure,
    refusal_for,
    stored_summary,
)
from tokenlife.services.scheduling import SchedulePolicy

log = logging.getLogger(__name__)
# The exchanges_total outcome of a stored connection, by its verdict.
STORED = {
    Verdict.REFRESHABLE: ExchangeOutcome.AUTHORIZED,
    Verdict.LONG_LIVED: ExchangeOutcome.AUTHORIZED,
    Verdict.REFRESH_TOKEN_MISSING: ExchangeOutcome.REFRESH_TOKEN_MISSING,
    Verdict.LIFETIME_UNKNOWN: ExchangeOutcome.LIFETIME_UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class Run:
    """One run of an exchange: the claimed state, its record, the task attempt, the time."""

    state: str
    pending: PendingAuthorization
    attempt: ExchangeAttempt
    now: float


def may_have_reached_provider(exc: TransientError) -> bool:
    """Whether the provider may have received (and redeemed) the code.

    A timeout, or a connection that broke after the request went out, leaves that
    unknown. A refused connection never carried it. A 429 or 5xx answer, or the OAuth
    `temporarily_unavailable` error, is the provider saying it did not process the
    request: RFC 6749 doesn't say whether such a code is spent, and providers don't
    consume a code they failed to serve, so it is sent again (a provider that did would
    answer the retry with `invalid_grant`, which ends the exchange as it would anyway).
    """
    if isinstance(exc, EndpointTimeoutError):
        return True
    return isinstance(exc, TransportError) and exc.request_sent


class ExchangeEnding:
    """Ends an exchange: the connection stored (or the account change refused), or
    `exchange.failed`; and clears a sent mark the provider can't have acted on."""

    def __init__(
        self,
        pending: PendingStore,
        exchanges: ExchangeStore,
        presets: Mapping[str, Preset],
        schedule_policy: SchedulePolicy,
        save_retry_seconds: float,
        counters: Counters | None = None,
    ) -> None:
        self._counters = counters
        self._pending = pending
        self._exchanges = exchanges
        self._presets = presets
        self._schedule_policy = schedule_policy
        self._save_retry_seconds = save_retry_seconds

    async def store(
        self, integration: Integration, run: Run, tokens: TokenSet, subject: str | None
    ) -> dict[str, Any]:
        """Save the connection with its events and the state's mark, in one step; or, when
        the stored connection is bound to another (or an untold) account, refuse."""
        pending, now = run.pending, run.now
        verdict = classify(tokens, integration.minimum_access_token_only_lifetime_days)
        status = status_for(verdict)
        published, fixes = authorized_events(
            integration, self._presets, pending, tokens, verdict, status, now
        )
        authorized = Authorized(
            integration=integration,
            connection_id=pending.connection_id,
            tokens=tokens,
            verdict=verdict,
            status=status,
            scopes_requested=pending.scopes,
            next_check_at=self._schedule_policy.next_check(integration, tokens, now, sent=()),
            subject=subject,
        )
        # Which refusal applies, should the stored connection be bound to an account.
        refused = (
            ("subject_mismatch", SUBJECT_MISMATCH)
            if subject
            else ("subject_unknown", SUBJECT_UNKNOWN)
        )
        diagnosis = diagnose_refusal(
            refusal_for(pending, integration, self._presets, refused[0], refused[1])
        )
        # An account change refused is the user's doing: exchange.failed, no alert.
        refused_event, refused_summary, _ = failure(
            pending, now, error=refused[0], description=refused[1],
            attempts=run.attempt.number, diagnosis=diagnosis,
        )  # fmt: skip
        saved = await retry_while_unavailable(
            lambda: self._exchanges.save(
                run.state,
                authorized,
                now,
                events=published,
                summary=stored_summary(integration, pending, tokens, verdict, status, fixes),
                refusal=(refused_event, refused_summary),
            ),
            self._save_retry_seconds,
        )
        where = f"{integration.name}/{pending.connection_id}"
        if saved.outcome is SaveOutcome.SUBJECT_MISMATCH:
            log.warning("exchange for %s refused: the tokens are for another account", where)
        elif saved.outcome is SaveOutcome.SUBJECT_UNKNOWN:
            log.warning("exchange for %s refused: the provider didn't say whose tokens "
                        "these are, and the connection is bound to an account", where)  # fmt: skip
        elif saved.outcome is SaveOutcome.ALREADY_DONE:
            log.warning("exchange for %s had already ended in another run; its outcome stands "
                        "and these tokens are dropped", where)  # fmt: skip
        else:
            log.info("connection %s stored: %s", where, verdict)
        if saved.outcome is SaveOutcome.SAVED:
            await self._count(integration.provider, STORED[verdict])
        elif saved.outcome is not SaveOutcome.ALREADY_DONE:  # counted by the run that ended it
            await self._count(integration.provider, ExchangeOutcome.FAILED, saved.outcome.value)
        return saved.summary

    async def fail(
        self,
        run: Run,
        error: str,
        description: str | None,
        integration: Integration | None = None,
        conceal: tuple[str | None, ...] = (),
        page: bool = True,
    ) -> dict[str, Any]:
        """Publish `exchange.failed` and `alert.exchange_failed`, with their diagnosis, and
        keep the outcome on the state, in one step; retried like the save while Redis is
        unavailable, so a failure still ends in its events. The description is provider
        text: bounded, and the code and state it may echo are masked (`conceal`)."""
        description = bounded(description, conceal=(run.state, *conceal))
        error = clean_error(error)  # the token endpoint's `error` is provider text too
        provider = integration.provider if integration is not None else UNKNOWN_PROVIDER
        diagnosis = diagnose_refusal(
            refusal_for(run.pending, integration, self._presets, error, description)
        )
        event, result, alert = failure(run.pending, run.now, error=error,
                                       description=description, attempts=run.attempt.number,
                                       diagnosis=diagnosis, provider=provider)  # fmt: skip
        # A cause the user chose (Cancel, MFA not done, an in-app browser) is the user's to
        # fix and has no resolution to close it: the event and the counter, no page.
        # An expired client secret pages once for the integration (alert.client_secret_expired,
        # raised by the caller: `page` False), not once per user who connects.
        alerts = () if diagnosis.severity == "info" or not page else (alert,)
        kept = await retry_while_unavailable(
            lambda: self._pending.finish(run.state, event, result, also=alerts),
            self._save_retry_seconds,
        )
        # The provider's description helps the operator; a token or code it echoes is
        # redacted (tokenlife.logs.conceal, log_redaction).
        log.warning("exchange for %s/%s failed: %s (%s)", run.pending.integration,
                    run.pending.connection_id, error, description or "no description")  # fmt: skip
        if kept == json.loads(json.dumps(result)):  # else an earlier run's outcome stands
            await self._count(provider, ExchangeOutcome.FAILED, error)
        return kept

    async def rejected(self, error: str) -> None:
        """A callback refused before any exchange began (no valid state to claim)."""
        await self._count(UNKNOWN_PROVIDER, ExchangeOutcome.FAILED, error)

    async def _count(
        self, provider: str, outcome: ExchangeOutcome, error: str | None = None
    ) -> None:
        if self._counters is not None:
            await self._counters.add({exchange_field(provider, outcome, error): 1})

    async def forget_sent(self, run: Run) -> None:
        """Clear the sent mark, best effort: the retry also carries `unsent_at`, so a Redis
        error here can't make it end as if the code had been spent."""
        try:
            await self._pending.forget_sent(run.state)
        except TransientError as exc:
            log.warning("exchange for %s/%s: the sent mark stays (%s); the retry ignores it",
                        run.pending.integration, run.pending.connection_id, exc)  # fmt: skip
