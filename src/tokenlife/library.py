"""The in-process interface for Python apps that share tokenlife's Redis and settings
(docs/library.md).

    tl = Tokenlife.from_environment()  # reads the settings; no I/O yet
    async with tl:  # or `await tl.open()` at start-up, `await tl.aclose()` at the end
        token = await tl.access_token("google-drive", "user-42")

Every answer is a class of `tokenlife.models`, built from the JSON the HTTP API answers,
so code moves between `tokenlife.client` and this unchanged. `tokenlife.sync.Tokenlife`
has the same methods for threads (Django views, Celery tasks).
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import AsyncIterator, Generator, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from tokenlife.adapters.keys import PENDING_AUTHORIZATION_TTL_SECONDS
from tokenlife.core.connect_session import SessionRequestError, parse_session_request
from tokenlife.core.refresh_refusal import RefusalKind
from tokenlife.errors import NoRefreshTokenError, UsageError
from tokenlife.models import (
    AccessToken,
    Authorization,
    Connection,
    ConnectSession,
    Deletion,
    ExchangeResult,
    Integration,
)
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.connect_session_issue import issue_connect_session
from tokenlife.services.connection_pages import connections_page, status_filter
from tokenlife.services.refresh_answer import raise_unless_fresh
from tokenlife.settings import Settings, load_settings

__all__ = ["Authorization", "ExchangeResult", "Tokenlife", "authorize_url", "get_access_token"]

# Runtimes opened before a fork: the child never closes them (their sockets are the
# parent's) and keeps them referenced, so no finalizer touches those sockets either.
_inherited: list[Runtime] = []


class Tokenlife:
    """Opens its clients (Redis, aiohttp) on the event loop of its first use, or of
    `open()` / `async with`; use it on that loop only, and close it (`aclose()`, or the
    end of `async with`) when done. Closing waits for refreshes and exchanges in flight.

    A process forked after it opened (a pre-forking server) opens anew in the child on
    first use; the parent's clients are left alone there.
    """

    def __init__(self, runtime: Runtime | None = None, *, settings: Settings | None = None) -> None:
        """Over an open `runtime` (closed with this), or opened lazily from `settings`
        (default: the environment, read now: a bad setting raises ConfigurationError)."""
        if runtime is not None:
            settings = runtime.config.settings
        self._settings = settings if settings is not None else load_settings()
        self._runtime = runtime
        self._pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[Runtime] | None = None
        self._closed = False

    @classmethod
    def from_environment(cls, settings: Settings | None = None) -> Tokenlife:
        """Configured from `TOKENLIFE_*` (or `settings`), read and checked now; the
        integrations file, OIDC discovery and Redis at first use or `open()`. Without
        TOKENLIFE_ENCRYPTION_KEYS it uses the development key `make run` wrote, found
        from the working directory upwards, with a warning."""
        return cls(settings=settings if settings is not None else load_settings())

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._runtime else "not opened"
        return f"<Tokenlife {self._settings.key_prefix!r} {state}>"

    def __await__(self) -> Generator[Any, None, Tokenlife]:
        """`await Tokenlife.from_environment()` opens it, as before from_environment was
        one step (deprecated: drop the `await`)."""
        warnings.warn(
            "`await Tokenlife.from_environment()` is deprecated: drop the `await` "
            "(`async with Tokenlife.from_environment() as tl`, or `await tl.open()`)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.open().__await__()

    async def open(self) -> Tokenlife:
        """Open now, so a wrong integrations file, an unreachable issuer or keys laid out
        for another shard count show at start-up rather than at the first call."""
        await self._ready()
        return self

    async def __aenter__(self) -> Tokenlife:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let refreshes and exchanges in flight finish (bounded), then close the clients.
        Calls after this raise UsageError."""
        self._closed = True
        opening, self._opening = self._opening, None
        if opening is not None and self._runtime is None:
            with suppress(Exception):
                self._runtime = await opening
        runtime, self._runtime = self._runtime, None
        if runtime is not None and self._pid != os.getpid():
            _inherited.append(runtime)  # the parent's, over its sockets: never closed here
        elif runtime is not None:
            await runtime.close()

    # -- what the HTTP API does ---------------------------------------------------------

    async def integrations(self) -> list[Integration]:
        """The configured integrations that are available (discovery succeeded)."""
        runtime = await self._ready()
        return [
            Integration.from_json({"name": i.name, "provider": i.provider, "scopes": [*i.scopes]})
            for i in runtime.config.integrations.values()
        ]

    async def connections(
        self, integration: str | None = None, status: str | None = None, limit: int = 100
    ) -> AsyncIterator[Connection]:
        """Every connection's metadata, filtered, read `limit` (at most MAX_PAGE, 500) at a time;
        the status as readers see it (a lapsed token reads as degraded)."""
        cursor: str | None = None
        while True:
            page, cursor = await self._page(integration, status, limit, cursor)
            for connection in page:
                yield connection
            if cursor is None:
                return

    async def _page(
        self, integration: str | None, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Connection], str | None]:
        """One page of `connections()` and the cursor of the next (None: the last); the
        sync facade walks the pages with it."""
        try:
            wanted = status_filter(status)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        runtime = await self._ready()
        names = sorted(runtime.config.integrations)
        if integration is not None:
            runtime.exchange.integration(integration)  # unknown or unavailable: raised
            names = [integration]
        page = await connections_page(runtime.listing, names, wanted, limit, cursor, time.time())
        return [Connection.from_json(c.as_json()) for c in page.connections], page.next_cursor

    async def connection(self, integration: str, connection_id: str) -> Connection:
        """A connection's metadata (status, expiry, scopes, last alert); never a token."""
        runtime = await self._ready()
        runtime.exchange.integration(integration)
        stored = await runtime.tokens.get(integration, connection_id)
        return Connection.from_json(stored.as_json())

    async def access_token(self, integration: str, connection_id: str) -> AccessToken:
        """A valid access token, refreshed first when it expires within the leeway,
        single-flight with the worker's scheduled refresh.

        Raises ReauthorizationRequiredError when the user has to connect again, and
        TransientError when the provider can't be reached right now (its subclass
        IntegrationUnavailableError while the integration's OIDC discovery has not
        succeeded; the instance retries discovery in the background while it is open).
        """
        runtime = await self._ready()
        return await runtime.access.get(integration, connection_id)

    async def get_access_token(self, integration: str, connection_id: str) -> AccessToken:
        """`access_token`, by its earlier name."""
        return await self.access_token(integration, connection_id)

    async def refresh(self, integration: str, connection_id: str) -> Connection:
        """Refresh now, due or not, in this process, and return the connection as saved.

        Unlike the API's POST /refresh, which queues the refresh for a worker, this one
        is done here: this process holds the keys, so it needs no broker, and the caller
        learns the outcome. It waits for a refresh the worker has in progress (a
        ConnectionBusyError past the bound). Raises ReauthorizationRequiredError when the
        user has to connect again, NoRefreshTokenError (a UsageError) when the connection
        has no refresh token (the API's 409 `no_refresh_token`), TransientError when the
        provider or Redis
        failed for now (the worker retries on schedule)."""
        runtime = await self._ready()
        runtime.exchange.integration(integration)
        stored = await runtime.tokens.get(integration, connection_id)
        refusal = stored.refresh_refusal(time.time())
        if refusal is not None and refusal.kind is RefusalKind.NO_REFRESH_TOKEN:
            # The class the HTTP clients raise for the API's 409 no_refresh_token.
            expires_at = stored.expires_at
            raise NoRefreshTokenError(
                integration, connection_id, refusal.reason,
                expires_at=None if expires_at is None else datetime.fromtimestamp(expires_at, UTC),
            )  # fmt: skip
        result = await runtime.refresh_now.refresh(integration, connection_id)
        # The errors the access-token path raises for the same outcomes.
        raise_unless_fresh(result, integration, connection_id)
        return await self.connection(integration, connection_id)

    async def delete(self, integration: str, connection_id: str) -> Deletion:
        """Revoke the grant at the provider (RFC 7009) where it can, then forget the
        connection; deleted even when the revocation failed (`revoked` says)."""
        runtime = await self._ready()
        return Deletion.from_json(
            await runtime.removal.delete(integration, connection_id, time.time())
        )

    async def create_connect_session(
        self,
        integration: str,
        connection_id: str,
        return_to: str | None = None,
        end_user: Mapping[str, str] | None = None,
    ) -> ConnectSession:
        """A one-time link, on the host of the integration's redirect_uri, that lets one
        user connect an account as `connection_id` (POST /api/connect-sessions).

        `return_to` must start with a prefix of TOKENLIFE_API_RETURN_TO_ALLOWED; `end_user`
        ({id, email, display_name}, id required) is kept with the authorization."""
        body: dict[str, Any] = {"integration": integration, "connection_id": connection_id}
        if return_to is not None:
            body["return_to"] = return_to
        if end_user is not None:
            body["end_user"] = dict(end_user)
        try:
            wanted = parse_session_request(body)
        except SessionRequestError as exc:
            raise UsageError(str(exc)) from None
        runtime = await self._ready()
        found = runtime.exchange.integration(wanted.integration)
        try:
            issued = await issue_connect_session(
                wanted, found, runtime.connect_sessions, self._settings.api_return_to_allowed,
                time.time(),
            )  # fmt: skip
        except SessionRequestError as exc:
            raise UsageError(str(exc)) from None
        return ConnectSession.from_json(issued.as_json())

    async def exchange_callback(
        self,
        *,
        state: str,
        code: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        iss: str | None = None,
    ) -> ExchangeResult:
        """Exchange the code your own OAuth callback received (or record the `error` it
        received instead), in this process: the worker's `tokenlife.exchange_code`, with
        its retries bounded by TOKENLIFE_API_CALLBACK_WAIT_SECONDS.

        Safe to call again with the same state: it never sends the code twice. A call
        while this process's exchange of that state runs waits for it; while another
        process's runs, it waits within the bound and then answers `outcome="in_progress"`
        (`final` false: ask again); once the exchange has ended, every call gets its
        outcome. A failed exchange is an ExchangeResult with `ok` false, not an exception.

        It does not check which browser brings the callback: your callback must, by
        comparing `state` with the one `authorize()` gave this browser's session (RFC 6749
        §10.12). Flows started at /connect end at tokenlife's /oauth/callback, which does."""
        runtime = await self._ready()
        summary = await runtime.exchange_now.exchange(
            state=state, code=code, error=error, error_description=error_description, iss=iss
        )
        return ExchangeResult.from_json(summary)

    async def authorize(
        self, integration: str, connection_id: str, *, now: float | None = None
    ) -> Authorization:
        """Start an authorization whose callback your app receives: send the browser to
        `url`, keep `state` in its session and pass the callback to `exchange_callback`
        only when the callback's state is that one. The state works once, for 10 minutes."""
        runtime = await self._ready()
        request = await runtime.exchange.start_authorization(
            integration, connection_id, time.time() if now is None else now
        )
        expires_at = request.pending.created_at + PENDING_AUTHORIZATION_TTL_SECONDS
        return Authorization(request.url, request.state, datetime.fromtimestamp(expires_at, UTC))

    async def authorize_url(
        self, integration: str, connection_id: str, *, now: float | None = None
    ) -> str:
        """`authorize(...).url`; an app with its own callback needs the state too: use
        `authorize`."""
        return (await self.authorize(integration, connection_id, now=now)).url

    # -- lifetime ---------------------------------------------------------------------------

    async def _ready(self) -> Runtime:
        if self._closed:
            raise UsageError("this Tokenlife is closed")
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid():
            self._forked()
        if self._loop is not None and self._loop is not loop:
            raise UsageError(
                "this Tokenlife was opened on another event loop; open one per loop, or use "
                "tokenlife.sync.Tokenlife from threads"
            )
        if self._runtime is not None:
            return self._runtime
        self._loop = loop
        if self._opening is None:
            self._opening = loop.create_task(self._open())
        opening = self._opening
        try:
            # Shielded: one caller giving up does not fail the open for the others.
            runtime = await asyncio.shield(opening)
        except Exception:
            if self._opening is opening:  # the next call tries again
                self._opening, self._loop = None, None
            raise
        if self._closed:  # aclose() ran while this waited: it closes (or closed) `runtime`
            raise UsageError("this Tokenlife is closed")
        self._runtime = runtime
        return runtime

    async def _open(self) -> Runtime:
        return await Runtime.open(await load_config(self._settings))

    def _forked(self) -> None:
        """In a child forked after this opened: leave the parent's clients alone."""
        if self._runtime is not None:
            _inherited.append(self._runtime)
        self._runtime, self._opening, self._loop = None, None, None
        self._pid = os.getpid()


async def authorize_url(integration: str, connection_id: str) -> str:
    """One-shot form of `Tokenlife.authorize_url`, configured from the environment."""
    async with Tokenlife.from_environment() as tl:
        return await tl.authorize_url(integration, connection_id)


async def get_access_token(integration: str, connection_id: str) -> AccessToken:
    """One-shot form of `Tokenlife.access_token`, configured from the environment.

    Apps that ask often should keep a `Tokenlife` open instead: this one reads the
    integrations file and opens connections on every call (OIDC discovery documents are
    reused while fresh: docs/library.md)."""
    async with Tokenlife.from_environment() as tl:
        return await tl.access_token(integration, connection_id)
