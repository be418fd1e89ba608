"""Authorization: start one (state + PKCE), then exchange the code the user brings back.

An exchange runs once per state. Its end is one atomic step (adapters/exchange_store.py,
adapters/pending_store.py): the connection with its events, or the `exchange.failed`
event, together with an "exchanged" mark on the state holding the task's summary. A task
delivered again finds the mark and returns the summary without calling the provider.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.exchange_store import Authorized, ExchangeStore, SaveOutcome
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.storage_errors import retry_while_unavailable
from tokenlife.adapters.token_endpoint import post_token_request
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events, pkce
from tokenlife.core.authorization import (
    AuthorizationRequest,
    PendingAuthorization,
    build_authorization_request,
)
from tokenlife.core.grants import authorization_code_request
from tokenlife.core.id_token import account_subject
from tokenlife.core.integration import Integration, check_connection_id
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.policy import classify, status_for
from tokenlife.core.presets import Preset
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import (
    IntegrationUnavailableError,
    InvalidIdTokenError,
    InvalidStateError,
    ProviderError,
    StorageUnavailableError,
    TransientError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.services.callback import (
    ExchangeAttempt,
    check_callback,
    error_code,
    issuer_problem,
    summary,
)
from tokenlife.services.exchange_events import (
    STORAGE_LOST,
    SUBJECT_MISMATCH,
    authorized_events,
    failure,
    stored_summary,
)
from tokenlife.services.scheduling import SchedulePolicy

log = logging.getLogger(__name__)


class ExchangeService:
    def __init__(
        self,
        *,
        integrations: Mapping[str, Integration],
        presets: Mapping[str, Preset],
        pending: PendingStore,
        tokens: TokenStore,
        exchanges: ExchangeStore,
        http: aiohttp.ClientSession,
        http_timeout: float,
        schedule_policy: SchedulePolicy,
        save_retry_seconds: float = 20.0,
    ) -> None:
        self.integrations = integrations
        self._presets = presets
        self._pending = pending
        self._tokens = tokens
        self._exchanges = exchanges
        self._http = http
        self._http_timeout = http_timeout
        self._schedule_policy = schedule_policy
        self._save_retry_seconds = save_retry_seconds

    def integration(self, name: str) -> Integration:
        return require_integration(self.integrations, name)

    async def start_authorization(
        self,
        integration_name: str,
        connection_id: str,
        now: float,
        return_to: str | None = None,
        *,
        end_user: Mapping[str, str] | None = None,
        browser_binding: str | None = None,
    ) -> AuthorizationRequest:
        """Store a pending authorization under a fresh state; return the URL for the user.
        `browser_binding` is the hash of the cookie nonce of a flow started at /connect."""
        integration = self.integration(integration_name)
        try:
            check_connection_id(connection_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        request = build_authorization_request(
            integration,
            connection_id,
            state=secrets.token_urlsafe(32),
            verifier=pkce.verifier_from_bytes(secrets.token_bytes(48)),
            now=now,
            return_to=return_to,
            end_user=end_user,
            browser_binding=browser_binding,
        )
        await self._pending.put(request.state, request.pending)
        return request

    async def pending_authorization(self, state: str) -> PendingAuthorization | None:
        """The authorization waiting under `state`, read without consuming it, so the
        callback can check the browser binding before the worker claims the state."""
        return await self._pending.read(state)

    async def connection(self, integration: str, connection_id: str) -> Connection:
        return await self._tokens.get(integration, connection_id)

    async def exchange_code(
        self,
        *,
        state: str,
        code: str | None,
        error: str | None,
        error_description: str | None,
        attempt: ExchangeAttempt,
        now: float,
        iss: str | None = None,
    ) -> dict[str, Any]:
        """Turn the callback into a stored token set, or an `exchange.failed` event.

        Runs at most once per state: a task delivered again (by the same id or another)
        gets the first outcome back, and the code is never sent after an answer was lost.
        Raises TransientError only when a retry may help and `attempt.final` is false.
        """
        problem = check_callback(state, code, error, iss)
        if problem is not None:
            log.warning("exchange rejected: %s", problem)
            return summary(
                None, None, outcome="failed", error="invalid_request", error_description=problem
            )
        try:
            claim = await self._pending.claim(state, attempt.attempt_id)
        except InvalidStateError as exc:
            log.warning("exchange rejected: %s", exc)
            return summary(
                None, None, outcome="failed", error="invalid_state", error_description=str(exc)
            )
        if claim.finished is not None:
            log.info("exchange already ended (a task delivered again): returning its outcome")
            return claim.finished
        assert claim.pending is not None
        run = _Run(state, claim.pending, attempt, now)
        pending = claim.pending
        try:
            integration = self.integration(pending.integration)
        except IntegrationUnavailableError as exc:
            # Its issuer's discovery hasn't succeeded yet: worth a retry while the user waits.
            if not attempt.final:
                raise
            return await self._fail(run, "integration_unavailable", str(exc))
        except UnknownIntegrationError:
            gone = f"integration {pending.integration!r} is no longer configured"
            return await self._fail(run, "unknown_integration", gone)
        if claim.sent_at is not None:
            # An earlier run sent the code and its answer was never stored (Redis failed,
            # or the worker died in between). A code works once (RFC 6749 §4.1.2); sent
            # again, the provider refuses it and may revoke what it issued.
            log.error(
                "exchange for %s/%s: the code was sent to the provider at %s but the answer "
                "was never stored; not sending it again",
                pending.integration, pending.connection_id, events.iso8601(claim.sent_at),
            )  # fmt: skip
            return await self._fail(run, "storage_unavailable", STORAGE_LOST)
        mixed_up = issuer_problem(integration, iss)
        if mixed_up is not None:
            return await self._fail(run, "issuer_mismatch", mixed_up)
        if error is not None:
            return await self._fail(run, error, error_description)
        assert code is not None
        return await self._redeem(integration, run, code)

    async def _redeem(self, integration: Integration, run: _Run, code: str) -> dict[str, Any]:
        """Send the code once, then keep the answer in memory until it is stored."""
        pending = run.pending
        request = authorization_code_request(
            integration, code, pending.redirect_uri, pending.verifier
        )
        await self._pending.note_sent(run.state, run.now)
        try:
            tokens = await post_token_request(self._http, request, self._http_timeout, run.now)
        except TransientError as exc:
            # No token set came back, so none can be lost: a retry sends the code again.
            # A timed-out request may have been redeemed; then the provider refuses the
            # second one and the exchange ends in invalid_grant, as it would have anyway.
            await self._pending.forget_sent(run.state)
            if not run.attempt.final:
                raise
            return await self._fail(run, exc.error, str(exc))
        except ProviderError as exc:
            return await self._fail(
                run, error_code(exc), getattr(exc, "description", None) or str(exc)
            )
        try:
            subject = account_subject(integration, tokens, run.now)
        except InvalidIdTokenError as exc:
            return await self._fail(run, exc.error, str(exc))
        try:
            return await self._store(integration, run, tokens, subject)
        except StorageUnavailableError:
            log.error(
                "exchange for %s/%s: the provider issued tokens but Redis stayed unavailable "
                "for %g s; the tokens are dropped and the user must connect again",
                pending.integration, pending.connection_id, self._save_retry_seconds,
            )  # fmt: skip
            if not run.attempt.final:
                raise  # the retry finds the code sent and ends in exchange.failed
            return await self._fail(run, "storage_unavailable", STORAGE_LOST)

    async def _store(
        self, integration: Integration, run: _Run, tokens: TokenSet, subject: str | None
    ) -> dict[str, Any]:
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
        refusal = failure(pending, now, error="subject_mismatch", description=SUBJECT_MISMATCH,
                          attempts=run.attempt.number)  # fmt: skip
        saved = await retry_while_unavailable(
            lambda: self._exchanges.save(
                run.state,
                authorized,
                now,
                events=published,
                summary=stored_summary(integration, pending, tokens, verdict, status, fixes),
                refusal=refusal,
            ),
            self._save_retry_seconds,
        )
        where = f"{integration.name}/{pending.connection_id}"
        if saved.outcome is SaveOutcome.SUBJECT_MISMATCH:
            log.warning("exchange for %s refused: the tokens are for another account", where)
        elif saved.outcome is SaveOutcome.ALREADY_DONE:
            log.warning("exchange for %s had already ended in another run; its outcome stands "
                        "and these tokens are dropped", where)  # fmt: skip
        else:
            log.info("connection %s stored: %s", where, verdict)
        return saved.summary

    async def _fail(self, run: _Run, error: str, description: str | None) -> dict[str, Any]:
        """Publish `exchange.failed` and keep the outcome on the state, in one step; retried
        like the save while Redis is unavailable, so a failure still ends in its event."""
        event, result = failure(run.pending, run.now, error=error, description=description,
                                attempts=run.attempt.number)  # fmt: skip
        kept = await retry_while_unavailable(
            lambda: self._pending.finish(run.state, event, result), self._save_retry_seconds
        )
        log.warning("exchange for %s/%s failed: %s",
                    run.pending.integration, run.pending.connection_id, error)  # fmt: skip
        return kept


@dataclass(frozen=True, slots=True)
class _Run:
    """One run of an exchange: the claimed state, its record, the task attempt, the time."""

    state: str
    pending: PendingAuthorization
    attempt: ExchangeAttempt
    now: float
