"""`tokenlife.sync.Tokenlife`: the in-process library for code that runs without an event
loop: Django views (many threads at once), an app's own Celery tasks (prefork children),
scripts (docs/library.md).

    tl = Tokenlife.from_environment()  # one per process, e.g. at module level
    token = tl.access_token("google-drive", "user-42")

The methods are those of `tokenlife.Tokenlife`, blocking. Each process runs one event loop
in a daemon thread ("tokenlife-sync"); a call submits its coroutine there and waits at
most `timeout` seconds (TransientError past it). A process forked after the facade was
used (a Celery prefork child, a pre-forking web server) notices the new pid and opens its
own loop, thread and Redis connections; it never touches its parent's.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import wait
from types import TracebackType
from typing import Any, TypeVar

from tokenlife.errors import TransientError, UsageError
from tokenlife.library import Tokenlife as AsyncTokenlife
from tokenlife.models import (
    AccessToken,
    Authorization,
    Connection,
    ConnectSession,
    Deletion,
    ExchangeResult,
    Integration,
)
from tokenlife.runtime import close_seconds
from tokenlife.settings import Settings, load_settings

__all__ = ["Tokenlife"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class _LoopThread:
    """The event loop of this process's sync calls, run forever by a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="tokenlife-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


_guard = threading.Lock()
_loop_thread: _LoopThread | None = None
# Left behind by a fork: the parent's loop (its thread does not exist in the child) and
# its clients. Kept referenced so that no finalizer touches the parent's sockets.
_inherited: list[object] = []
_instances: weakref.WeakSet[Tokenlife] = weakref.WeakSet()


def _process_loop() -> _LoopThread:
    global _loop_thread
    with _guard:
        if _loop_thread is None or _loop_thread.pid != os.getpid():
            if _loop_thread is not None:
                _inherited.append(_loop_thread)
            _loop_thread = _LoopThread()
        elif not _loop_thread.thread.is_alive():
            # Its loop stopped (a callback that stopped it, or raised past run_forever):
            # every call would wait out its timeout on it. Its clients stay with it.
            log.error("tokenlife.sync: the event loop thread had ended; starting another")
            _inherited.append(_loop_thread)
            _loop_thread = _LoopThread()
        return _loop_thread


def _reset_locks_in_child() -> None:
    """A lock held by another thread at the fork stays held in the child, where that
    thread does not exist: new ones (the child has one thread while this runs)."""
    global _guard
    _guard = threading.Lock()
    for instance in list(_instances):
        instance._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_locks_in_child)


def _refuse_inside_a_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UsageError(
        "tokenlife.sync.Tokenlife was called from a thread that runs an event loop, which the "
        "call would block (on tokenlife's own loop: forever); await the methods of "
        "tokenlife.Tokenlife there, or call this from another thread (asyncio.to_thread)"
    )


class Tokenlife:
    """Safe to share between threads; one per process is enough (and cheapest)."""

    def __init__(self, settings: Settings | None = None, *, timeout: float | None = None) -> None:
        """From `settings` (default: the environment, read now: a bad setting raises
        ConfigurationError). `timeout`: how long a call waits (default
        TOKENLIFE_API_REQUEST_TIMEOUT_SECONDS, what the HTTP API allows a request)."""
        self._settings = settings if settings is not None else load_settings()
        if timeout is not None and not timeout > 0:
            raise UsageError("timeout must be positive")
        self._timeout = timeout or self._settings.api_request_timeout_seconds
        self._lock = threading.Lock()
        self._inner: AsyncTokenlife | None = None
        self._inner_pid = 0
        self._inner_loop: _LoopThread | None = None
        self._closed = False
        _instances.add(self)

    @classmethod
    def from_environment(
        cls, settings: Settings | None = None, *, timeout: float | None = None
    ) -> Tokenlife:
        """As `tokenlife.Tokenlife.from_environment`: settings read now, the rest at first
        use or `open()`."""
        return cls(settings, timeout=timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._inner else "not opened"
        return f"<tokenlife.sync.Tokenlife {self._settings.key_prefix!r} {state}>"

    def open(self) -> Tokenlife:
        """Open now (integrations file, discovery, Redis): configuration errors at
        start-up rather than at the first call."""
        self._call(lambda tl: tl.open())
        return self

    def __enter__(self) -> Tokenlife:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Let refreshes and exchanges in flight finish (bounded, as the async close),
        then close the clients. Calls after this raise UsageError; closing twice is fine."""
        _refuse_inside_a_loop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            inner, self._inner = self._inner, None
            loop = self._inner_loop
        _instances.discard(self)
        if inner is None or loop is None:
            return
        if self._inner_pid != os.getpid() or not loop.thread.is_alive():
            _inherited.append(inner)
            return
        # What Runtime.close waits for, and a few seconds to close the clients.
        bound = close_seconds(self._settings) + 5
        future = asyncio.run_coroutine_threadsafe(inner.aclose(), loop.loop)
        if not wait([future], timeout=bound).done:
            log.error("tokenlife.sync: close did not end within %.0f s", bound)
            return
        future.result()

    # -- the methods of tokenlife.Tokenlife, blocking -------------------------------------

    def integrations(self) -> list[Integration]:
        return self._call(lambda tl: tl.integrations())

    def connections(
        self, integration: str | None = None, status: str | None = None, limit: int = 100
    ) -> Iterator[Connection]:
        """Every connection's metadata, filtered, read a page of `limit` per call."""
        cursor: str | None = None
        while True:
            page, cursor = self._page(integration, status, limit, cursor)
            yield from page
            if cursor is None:
                return

    def _page(
        self, integration: str | None, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Connection], str | None]:
        return self._call(lambda tl: tl._page(integration, status, limit, cursor))

    def connection(self, integration: str, connection_id: str) -> Connection:
        return self._call(lambda tl: tl.connection(integration, connection_id))

    def access_token(self, integration: str, connection_id: str) -> AccessToken:
        return self._call(lambda tl: tl.access_token(integration, connection_id))

    def get_access_token(self, integration: str, connection_id: str) -> AccessToken:
        return self.access_token(integration, connection_id)

    def refresh(self, integration: str, connection_id: str) -> Connection:
        return self._call(lambda tl: tl.refresh(integration, connection_id))

    def delete(self, integration: str, connection_id: str) -> Deletion:
        return self._call(lambda tl: tl.delete(integration, connection_id))

    def create_connect_session(
        self,
        integration: str,
        connection_id: str,
        return_to: str | None = None,
        end_user: Mapping[str, str] | None = None,
    ) -> ConnectSession:
        return self._call(
            lambda tl: tl.create_connect_session(integration, connection_id, return_to, end_user)
        )

    def exchange_callback(
        self,
        *,
        state: str,
        code: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        iss: str | None = None,
    ) -> ExchangeResult:
        """As the async one. Past `timeout` (a TransientError) the exchange runs on and is
        stored: call again with the same state for its outcome, which waits for it (the
        same process) or answers `in_progress` while it runs elsewhere."""
        return self._call(
            lambda tl: tl.exchange_callback(
                state=state, code=code, error=error, error_description=error_description, iss=iss
            )
        )

    def authorize(
        self, integration: str, connection_id: str, *, now: float | None = None
    ) -> Authorization:
        """As the async one: the URL, and the state to keep in the browser's session."""
        return self._call(lambda tl: tl.authorize(integration, connection_id, now=now))

    def authorize_url(
        self, integration: str, connection_id: str, *, now: float | None = None
    ) -> str:
        return self._call(lambda tl: tl.authorize_url(integration, connection_id, now=now))

    # -- the loop -----------------------------------------------------------------------

    def _call(self, make: Callable[[AsyncTokenlife], Coroutine[Any, Any, T]]) -> T:
        _refuse_inside_a_loop()
        loop, inner = self._bind()
        future = asyncio.run_coroutine_threadsafe(make(inner), loop.loop)
        if not wait([future], timeout=self._timeout).done:
            future.cancel()  # a refresh or an exchange already sent runs on, shielded
            error = TransientError(f"tokenlife did not answer within {self._timeout:g} s")
            error.retry_after = 2.0
            raise error
        return future.result()

    def _bind(self) -> tuple[_LoopThread, AsyncTokenlife]:
        """This process's loop, and the async Tokenlife opened (lazily) on it."""
        with self._lock:
            if self._closed:
                raise UsageError("this Tokenlife is closed")
            loop = _process_loop()
            pid = os.getpid()
            if self._inner is None or self._inner_pid != pid or self._inner_loop is not loop:
                # The parent's (over its sockets), or a dead loop's: never closed.
                if self._inner is not None:
                    _inherited.append(self._inner)
                self._inner = AsyncTokenlife(settings=self._settings)
                self._inner_pid, self._inner_loop = pid, loop
            return loop, self._inner


@atexit.register
def _close_at_exit() -> None:
    """At interpreter exit (daemon threads still run then): refreshes in flight are saved."""
    for instance in list(_instances):
        try:
            instance.close()
        except Exception as exc:  # exiting anyway; say why it was not clean
            log.warning("tokenlife.sync: close at exit failed: %s", exc)
