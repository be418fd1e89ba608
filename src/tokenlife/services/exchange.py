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
from typing import Any

import aiohttp

from tokenlife import logs
from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.exchange_store import ExchangeStore
from tokenlife.adapters.outcome_counters import Counters
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.token_endpoint import post_token_request
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events, pkce
from tokenlife.core.authorization import (
    AuthorizationRequest,
    PendingAuthorization,
    build_authorization_request,
)
from tokenlife.core.authorization_errors import clean_error
from tokenlife.core.grants import authorization_code_request
from tokenlife.core.id_token import account_subject
from tokenlife.core.integration import Integration, check_connection_id
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.presets import Preset
from tokenlife.core.secret_expiry import names_expired_secret
from tokenlife.errors import (
    CodeNotTakenError,
    IntegrationUnavailableError,
    InvalidIdTokenError,
    InvalidStateError,
    OAuthError,
    ProviderError,
    StorageUnavailableError,
    TransientError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.services.account import account_from_endpoint
from tokenlife.services.callback import (
    ExchangeAttempt,
    check_callback,
    error_code,
    issuer_problem,
    summary,
)
from tokenlife.services.exchange_ending import ExchangeEnding, Run, may_have_reached_provider
from tokenlife.services.exchange_events import (
    OUTCOME_UNKNOWN,
    STORAGE_LOST,
)
from tokenlife.services.introspected_lifetime import learn_lifetime
from tokenlife.services.scheduling import SchedulePolicy
from tokenlife.services.secret_expiry import ClientSecretWatch

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
        counters: Counters | None = None,
        secrets: ClientSecretWatch | None = None,
    ) -> None:
        self.integrations = integrations
        self._secrets = secrets
        self._pending = pending
        self._tokens = tokens
        self._http = http
        self._http_timeout = http_timeout
        self._save_retry_seconds = save_retry_seconds
        self._ending = ExchangeEnding(
            pending, exchanges, presets, schedule_policy, save_retry_seconds, counters
        )

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
            state=self._pending.new_state(integration_name, connection_id),
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
        gets the first outcome back, and the code is never sent twice once the provider
        may have received it. Raises TransientError only when a retry may help and
        `attempt.final` is false: CodeNotTakenError when the retry may send the code again.
        """
        logs.conceal(state, code)
        problem = check_callback(state, code, error, iss)
        if problem is not None:
            log.warning("exchange rejected: %s", problem)
            await self._ending.rejected("invalid_request")
            return summary(
                None, None, outcome="failed", error="invalid_request", error_description=problem
            )
        try:
            claim = await self._pending.claim(state, attempt.attempt_id)
        except InvalidStateError as exc:
            log.warning("exchange rejected: %s", exc)
            await self._ending.rejected("invalid_state")
            return summary(
                None, None, outcome="failed", error="invalid_state", error_description=str(exc)
            )
        if claim.in_progress and attempt.reports_in_progress:
            held = "another attempt is exchanging this state"
            return summary(None, None, outcome="in_progress", error_description=held)
        if claim.in_progress:
            log.warning("exchange rejected: the state is being exchanged by another attempt")
            await self._ending.rejected("invalid_state")
            return summary(None, None, outcome="failed", error="invalid_state",
                           error_description="unknown, expired or already used state")  # fmt: skip
        if claim.finished is not None:
            log.info("exchange already ended (a task delivered again): returning its outcome")
            return claim.finished
        assert claim.pending is not None
        run = Run(state, claim.pending, attempt, now)
        pending = claim.pending
        logs.bind_connection(pending.integration, pending.connection_id)
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
        if claim.sent_at is not None and claim.sent_at != attempt.unsent_at:
            # An earlier run sent the code and its answer was never stored (Redis failed,
            # or the worker died in between). A code works once (RFC 6749 §4.1.2); sent
            # again, the provider refuses it and may revoke what it issued. A mark the
            # previous run knows the provider never took (`unsent_at`) doesn't count.
            log.error(
                "exchange for %s/%s: the code was sent to the provider at %s but the answer "
                "was never stored; not sending it again",
                pending.integration, pending.connection_id, events.iso8601(claim.sent_at),
            )  # fmt: skip
            return await self._fail(run, "storage_unavailable", STORAGE_LOST)
        logs.bind_connection(pending.integration, pending.connection_id, integration.provider)
        mixed_up = issuer_problem(integration, iss)
        if mixed_up is not None:
            return await self._fail(run, "issuer_mismatch", mixed_up)
        if error is not None:
            # The callback's error comes from the browser's query string: RFC 6749's
            # characters only, bounded (the description is bounded in _fail).
            return await self._fail(run, clean_error(error), error_description)
        assert code is not None
        return await self._redeem(integration, run, code)

    async def _redeem(self, integration: Integration, run: Run, code: str) -> dict[str, Any]:
        """Send the code once, then keep the answer in memory until it is stored."""
        pending = run.pending
        request = authorization_code_request(
            integration, code, pending.redirect_uri, pending.verifier
        )
        await self._pending.note_sent(run.state, run.now)
        try:
            tokens = await post_token_request(self._http, request, self._http_timeout, run.now)
            logs.conceal(tokens.access_token, tokens.refresh_token, tokens.id_token)
        except TransientError as exc:
            if may_have_reached_provider(exc):
                # The sent mark stays: whatever runs next never sends this code again.
                log.error("exchange for %s/%s: %s; the provider may have redeemed the code, "
                          "so it is not sent again", pending.integration,
                          pending.connection_id, exc)  # fmt: skip
                return await self._fail(run, "outcome_unknown", OUTCOME_UNKNOWN)
            if run.attempt.final:
                return await self._fail(run, exc.error, str(exc), code)
            await self._ending.forget_sent(run)
            raise CodeNotTakenError(exc, unsent_at=run.now) from exc
        except ProviderError as exc:
            # An expired client secret: one alert.client_secret_expired for the integration
            # instead of an alert.exchange_failed per user (the event still says why).
            expired = isinstance(exc, OAuthError) and names_expired_secret(
                exc.error, exc.description
            )
            if expired and isinstance(exc, OAuthError) and self._secrets is not None:
                await self._secrets.tell_refused(integration, exc.error, exc.description,
                                                 run.now)  # fmt: skip
            page = not (expired and self._secrets is not None)
            return await self._fail(
                run, error_code(exc), getattr(exc, "description", None) or str(exc), code, page
            )
        # The provider took the client secret: an expired-secret alert, if raised, ends.
        if self._secrets is not None:
            await self._secrets.tell_accepted(integration, run.now)
        tokens = await learn_lifetime(self._http, integration, tokens, self._http_timeout, run.now)
        try:
            subject = account_subject(integration, tokens, run.now, pending.scopes)
        except InvalidIdTokenError as exc:
            return await self._fail(run, exc.error, str(exc))
        if subject is None:  # no ID token: the account endpoint, where the preset has one
            subject = await account_from_endpoint(
                self._http, integration, tokens, self._http_timeout
            )
        try:
            return await self._ending.store(integration, run, tokens, subject)
        except StorageUnavailableError:
            log.error(
                "exchange for %s/%s: the provider issued tokens but Redis stayed unavailable "
                "for %g s; the tokens are dropped and the user must connect again",
                pending.integration, pending.connection_id, self._save_retry_seconds,
            )  # fmt: skip
            if not run.attempt.final:
                raise  # the retry finds the code sent and ends in exchange.failed
            return await self._fail(run, "storage_unavailable", STORAGE_LOST)

    async def _fail(
        self,
        run: Run,
        error: str,
        description: str | None,
        code: str | None = None,
        page: bool = True,
    ) -> dict[str, Any]:
        integration = self.integrations.get(run.pending.integration)
        return await self._ending.fail(
            run, error, description, integration, conceal=(code,), page=page
        )
