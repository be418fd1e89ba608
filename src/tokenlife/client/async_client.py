"""`AsyncClient`: the HTTP API on asyncio, on an `httpx.AsyncClient`."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TypeVar

import httpx

from tokenlife.client import calls
from tokenlife.client.following import Following
from tokenlife.client.http import DEFAULT_TIMEOUT, Target, request_failed
from tokenlife.errors import UsageError
from tokenlife.models import (
    AccessToken,
    Connection,
    ConnectSession,
    Deletion,
    Event,
    EventPage,
    Integration,
    Readiness,
)

T = TypeVar("T")


class AsyncClient:
    """The HTTP API of tokenlife on asyncio: the methods of `Client`, awaited. One instance
    serves many tasks of one event loop at once; close it (`aclose`), or use `async with`.

    `transport` (an `httpx.AsyncBaseTransport`) goes to the `httpx.AsyncClient` this client
    opens; pass `http_client` instead to use an `httpx.AsyncClient` of your own, which stays
    yours to close. A client that opened its own `httpx.AsyncClient` opens a new one in a
    process forked from the one that made it, so the two processes never share a socket;
    a transport or client passed in is yours to keep out of a fork."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if transport is not None and http_client is not None:
            raise UsageError("pass transport or http_client, not both")
        self._target = Target.checked(base_url, api_key, timeout)
        self._transport = transport
        self._owns_http = http_client is None
        # A transport passed in keeps its pool across a fork whatever wraps it.
        self._reopens_after_fork = http_client is None and transport is None
        self._http = http_client if http_client is not None else self._open_http()
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncClient({self._target.base_url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the `httpx.AsyncClient` this client opened; one passed in stays open."""
        self._closed = True
        if self._owns_http and self._pid == os.getpid():
            await self._http.aclose()

    async def integrations(self) -> list[Integration]:
        """The integrations this key may use."""
        return await self._send(calls.integrations())

    async def connections(
        self, integration: str | None = None, status: str | None = None, limit: int = 100
    ) -> AsyncIterator[Connection]:
        """Every connection (of `integration`, with `status`), following the API's cursor
        `limit` at a time; the first request goes out at the first `anext()`."""
        cursor: str | None = None
        while True:
            page = await self._send(calls.connection_page(integration, status, limit, cursor))
            for connection in page.connections:
                yield connection
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def connection(self, integration: str, connection_id: str) -> Connection:
        """One connection's metadata: status, expiry, next refresh, last error."""
        return await self._send(calls.connection(integration, connection_id))

    async def access_token(self, integration: str, connection_id: str) -> AccessToken:
        """A token valid for at least the server's leeway; refreshed first when needed."""
        return await self._send(calls.access_token(integration, connection_id))

    async def refresh(self, integration: str, connection_id: str) -> None:
        """Queue a refresh for the worker now; returns once it is queued."""
        await self._send(calls.refresh(integration, connection_id))

    async def delete(self, integration: str, connection_id: str) -> Deletion:
        """Revoke where the provider can, then forget the connection."""
        return await self._send(calls.delete(integration, connection_id))

    async def create_connect_session(
        self,
        integration: str,
        connection_id: str,
        return_to: str | None = None,
        end_user: Mapping[str, str] | None = None,
    ) -> ConnectSession:
        """A one-time link that lets one user connect an account as `connection_id`."""
        return await self._send(
            calls.create_connect_session(integration, connection_id, return_to, end_user)
        )

    async def ready(self) -> Readiness:
        """The readiness checks, also when they say the service is not ready."""
        return await self._send(calls.ready())

    async def events(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        wait: float = 0,
        types: Iterable[str] | str | None = None,
    ) -> EventPage:
        """One page of the events after `after` (None: only those to come; "0": from the
        oldest kept), waiting up to `wait` seconds for one to come."""
        return await self._send(calls.events(after, limit, wait, types))

    def follow_events(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        wait: float = 30,
        types: Iterable[str] | str | None = None,
        on_gap: Callable[[EventPage], object] | None = None,
    ) -> AsyncIterator[Event]:
        """Every event after `after`, page after page, until the task is cancelled. Keep
        the `id` of the last event handled and pass it as `after` to resume with nothing
        skipped (`follow_pages` gives the pages, whose `next_after` is a position to keep
        too).

        Events trimmed before they were read (a position older than the streams keep)
        raise EventsTrimmedError, unless `on_gap` is given: it is called (and awaited,
        when it returns an awaitable) with the page that follows the gap, whose events are
        then yielded as usual."""
        pages = self.follow_pages(after, limit=limit, wait=wait, types=types, on_gap=on_gap)
        return _events_of(pages)

    def follow_pages(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        wait: float = 30,
        types: Iterable[str] | str | None = None,
        on_gap: Callable[[EventPage], object] | None = None,
    ) -> AsyncIterator[EventPage]:
        """Every page of events after `after`, empty ones too, until the task is
        cancelled. Save each page's `next_after` once its events are handled: it moves
        also when no event is for this reader."""
        return self._follow(Following.checked(after, limit, wait, types, on_gap))

    async def _follow(self, following: Following) -> AsyncIterator[EventPage]:
        while True:
            started = time.monotonic()
            page = await self._send(following.call())
            handler = following.gap_handler(page)
            if handler is not None:
                handled = handler(page)
                if isinstance(handled, Awaitable):
                    await handled
            least = following.moved_to(page)
            yield page
            pause = least - (time.monotonic() - started)
            if pause > 0:
                # Imported here: asyncio is a third of the client's import time, and an
                # app that never follows events (or uses the sync client) needn't pay it.
                import asyncio

                await asyncio.sleep(pause)

    async def _send(self, call: calls.Call[T]) -> T:
        http = self._http_for_this_process()
        failure: Exception | None = None
        try:
            response = await http.request(**self._target.request(call))
        except httpx.RequestError as exc:
            # Raised after the block, so httpx's exception (its request holds the key) is
            # not even the error's __context__.
            failure = self._closed_error() if self._closed else request_failed(exc, call)
        except RuntimeError:
            if not self._closed:  # httpx's "the client has been closed": an aclose() raced
                raise
            failure = self._closed_error()
        if failure is not None:
            raise failure
        return call.answer(response.status_code, response.headers, response.content, time.time())

    def _closed_error(self) -> UsageError:
        return UsageError("this AsyncClient is closed")

    def _http_for_this_process(self) -> httpx.AsyncClient:
        if self._closed:
            raise self._closed_error()
        if self._pid != os.getpid() and self._reopens_after_fork:
            # Forked: the parent's pool holds sockets the parent still uses. Leave them
            # (closing one would end the parent's TLS session too) and open a pool here.
            self._http = self._open_http()
            self._pid = os.getpid()
        return self._http

    def _open_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, follow_redirects=False)


async def _events_of(pages: AsyncIterator[EventPage]) -> AsyncIterator[Event]:
    async for page in pages:
        for event in page.events:
            yield event
