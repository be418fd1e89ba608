"""Authorization: start one (state + PKCE), then exchange the code the user brings back."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import aiohttp

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import EventStream, new_event
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.token_endpoint import post_token_request
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events, pkce
from tokenlife.core.authorization import (
    AuthorizationRequest,
    PendingAuthorization,
    build_authorization_request,
)
from tokenlife.core.diagnosis import diagnose_missing_refresh_token
from tokenlife.core.grants import authorization_code_request
from tokenlife.core.integration import Integration, check_connection_id
from tokenlife.core.integration_registry import require_integration
from tokenlife.core.policy import Verdict, classify, status_for
from tokenlife.core.presets import Preset
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import (
    InvalidStateError,
    ProviderError,
    TransientError,
    UsageError,
)
from tokenlife.services.callback import (
    ExchangeAttempt,
    check_callback,
    described_params,
    error_code,
    summary,
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
        events: EventStream,
        http: aiohttp.ClientSession,
        http_timeout: float,
        schedule_policy: SchedulePolicy,
    ) -> None:
        self.integrations = integrations
        self._presets = presets
        self._pending = pending
        self._tokens = tokens
        self._events = events
        self._http = http
        self._http_timeout = http_timeout
        self._schedule_policy = schedule_policy

    def integration(self, name: str) -> Integration:
        return require_integration(self.integrations, name)

    async def start_authorization(
        self, integration_name: str, connection_id: str, now: float, return_to: str | None = None
    ) -> AuthorizationRequest:
        """Store a pending authorization under a fresh state; return the URL for the user."""
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
        )
        await self._pending.put(request.state, request.pending)
        return request

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
    ) -> dict[str, Any]:
        """Turn the callback into a stored token set, or an `exchange.failed` event.

        Raises TransientError only when a retry may help and `attempt.final` is false.
        """
        problem = check_callback(state, code, error)
        if problem is not None:
            log.warning("exchange rejected: %s", problem)
            return summary(
                None, None, outcome="failed", error="invalid_request", error_description=problem
            )
        try:
            pending = await self._pending.claim(state, attempt.attempt_id)
        except InvalidStateError as exc:
            log.warning("exchange rejected: %s", exc)
            return summary(
                None, None, outcome="failed", error="invalid_state", error_description=str(exc)
            )
        integration = self.integrations.get(pending.integration)
        if integration is None:
            return await self._fail(
                state,
                pending,
                now,
                attempt,
                "unknown_integration",
                f"integration {pending.integration!r} is no longer configured",
            )
        if error is not None:
            return await self._fail(state, pending, now, attempt, error, error_description)
        assert code is not None
        request = authorization_code_request(
            integration, code, pending.redirect_uri, pending.verifier
        )
        try:
            tokens = await post_token_request(self._http, request, self._http_timeout, now)
        except TransientError as exc:
            if not attempt.final:
                raise
            return await self._fail(state, pending, now, attempt, exc.error, str(exc))
        except ProviderError as exc:
            description = getattr(exc, "description", None) or str(exc)
            return await self._fail(state, pending, now, attempt, error_code(exc), description)
        result = await self._store(integration, pending, tokens, now)
        await self._pending.release(state)
        return result

    async def _store(
        self, integration: Integration, pending: PendingAuthorization, tokens: TokenSet, now: float
    ) -> dict[str, Any]:
        verdict = classify(tokens, integration.minimum_access_token_only_lifetime_days)
        status = status_for(verdict)
        next_check = self._schedule_policy.next_check(integration, tokens, now, sent=())
        await self._tokens.save(
            integration=integration.name,
            connection_id=pending.connection_id,
            provider=integration.provider,
            tokens=tokens,
            verdict=verdict,
            status=status,
            scopes_requested=pending.scopes,
            next_check_at=next_check,
            now=now,
        )
        common = {
            "provider": integration.provider,
            "status": status.value,
            "expires_at": events.iso8601(tokens.expires_at),
            "access_token_lifetime_seconds": tokens.lifetime_seconds,
            "refresh_token_received": tokens.refresh_token is not None,
        }
        await self._events.emit(
            events.CONNECTION_AUTHORIZED,
            integration.name,
            pending.connection_id,
            now,
            verdict=verdict.value,
            **common,
        )
        fixes: list[str] = []
        if verdict is Verdict.REFRESH_TOKEN_MISSING:
            fixes = await self._emit_refresh_token_missing(
                integration, pending, tokens, now, common
            )
        elif verdict is Verdict.LIFETIME_UNKNOWN:
            await self._alert(
                events.LIFETIME_UNKNOWN,
                integration.name,
                pending.connection_id,
                now,
                message="The access token came without a refresh token, expires_in or a JWT "
                "exp claim, so its lifetime can't be checked.",
                minimum_lifetime_days=integration.minimum_access_token_only_lifetime_days,
                **common,
            )
        log.info("connection %s/%s stored: %s", integration.name, pending.connection_id, verdict)
        return summary(
            integration.name,
            pending.connection_id,
            outcome=verdict.value,
            status=status.value,
            expires_at=events.iso8601(tokens.expires_at),
            refresh_token_received=tokens.refresh_token is not None,
            return_to=pending.return_to,
            fixes=fixes,
        )

    async def _emit_refresh_token_missing(
        self,
        integration: Integration,
        pending: PendingAuthorization,
        tokens: TokenSet,
        now: float,
        common: dict[str, Any],
    ) -> list[str]:
        """Emit the alert; return its fix steps (the connect page shows them)."""
        diagnosis = diagnose_missing_refresh_token(
            integration,
            self._presets,
            pending.params,
            tokens.granted_scopes,
            tokens.lifetime_seconds,
        )
        await self._alert(
            events.REFRESH_TOKEN_MISSING,
            integration.name,
            pending.connection_id,
            now,
            message=events.REFRESH_TOKEN_MISSING_MESSAGE,
            minimum_lifetime_days=integration.minimum_access_token_only_lifetime_days,
            requested={"scopes": list(pending.scopes), "params": described_params(pending)},
            granted_scopes=None if tokens.granted_scopes is None else list(tokens.granted_scopes),
            diagnosis=[cause.as_dict() for cause in diagnosis],
            **common,
        )
        return [cause.fix for cause in diagnosis]

    async def _alert(
        self, type_: str, integration: str, connection_id: str, now: float, **fields: Any
    ) -> None:
        """Publish an alert and remember it on the connection (the API shows the last)."""
        event = new_event(type_, integration, connection_id, now, **fields)
        await self._events.publish(event)
        await self._tokens.note_alert(event)

    async def _fail(
        self,
        state: str,
        pending: PendingAuthorization,
        now: float,
        attempt: ExchangeAttempt,
        error: str,
        description: str | None,
    ) -> dict[str, Any]:
        await self._pending.release(state)
        await self._events.emit(
            events.EXCHANGE_FAILED,
            pending.integration,
            pending.connection_id,
            now,
            error=error,
            error_description=description,
            attempts=attempt.number,
        )
        log.warning(
            "exchange for %s/%s failed: %s", pending.integration, pending.connection_id, error
        )
        return summary(
            pending.integration,
            pending.connection_id,
            outcome="failed",
            error=error,
            error_description=description,
            return_to=pending.return_to,
        )
