"""tokenlife's tasks as Celery signatures, for an app's own Celery project (docs/celery.md).

    from tokenlife.celery_signatures import exchange_code

    summary = exchange_code.delay(state=state, code=code).get(timeout=30)
    chain(exchange_code.s(state=state, code=code),
          record_connection.s().set(queue="myapp")).delay()

Nothing here imports `tokenlife.worker` or `tokenlife.tasks`: they are the worker's, and
importing them connects tokenlife's receivers to Celery's process-wide signals (logging
set-up, a runtime opened in every worker process), which an app's own worker must not get.
A signature names the task and tokenlife's queue, and is sent through a Celery app on
tokenlife's broker (`client_app`), whatever broker the app's own Celery app uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Literal, TypedDict

from celery import Celery, Signature
from celery.result import AsyncResult

from tokenlife.celery_config import celery_config
from tokenlife.errors import UsageError
from tokenlife.services.callback import check_callback, masked, masked_reprs
from tokenlife.settings import Settings, load_settings

__all__ = [
    "ExchangeCode",
    "ExchangeSignature",
    "ExchangeSummary",
    "broker_settings",
    "client_app",
    "exchange_code",
]

# What says where messages and results go, and how a connection to them behaves; what the
# worker's config says about running tasks (acks, prefetch, beat) is the worker's alone.
_CONNECTION_SETTINGS = (
    "broker_transport",
    "broker_url",
    "broker_transport_options",
    "broker_connection_retry",
    "broker_connection_max_retries",
    "broker_connection_retry_on_startup",
    "broker_channel_error_retry",
    "result_backend",
    "result_backend_transport_options",
    "redis_backend_health_check_interval",
    "redis_retry_on_timeout",
    "redis_socket_timeout",
    "redis_socket_connect_timeout",
    "task_publish_retry",
    "task_publish_retry_policy",
)


class ExchangeSummary(TypedDict):
    """What `tokenlife.exchange_code` returns (its result, `.get()`): never a token value."""

    integration: str | None  # None when the state was unknown (error "invalid_state")
    connection_id: str | None
    # refreshable, long_lived, refresh_token_missing or lifetime_unknown when tokens were
    # stored (docs/events.md, connection.authorized's verdict); failed otherwise
    outcome: Literal[
        "refreshable", "long_lived", "refresh_token_missing", "lifetime_unknown", "failed"
    ]
    status: Literal["active", "degraded"] | None  # None when nothing was stored
    expires_at: str | None  # ISO 8601 UTC, when the access token expires; None when unknown
    refresh_token_received: bool
    error: str | None  # exchange.failed's error (docs/events.md), or invalid_state/_request
    error_description: str | None
    return_to: str | None  # the connect session's return_to, when it had one
    fixes: list[str]  # what to change, most likely first (a degraded or failed connect)
    diagnosis: list[dict[str, str | None]]  # a failure's {cause, fix, evidence, source}


def broker_settings(settings: Settings | None = None) -> dict[str, Any]:
    """Celery settings that reach tokenlife's broker and result backend, in tokenlife's key
    namespace: for `app.conf.update(...)` of an app whose own worker shares tokenlife's
    broker (a chain continuing with the app's task needs that). No queue, serializer or
    worker setting: the app keeps its own."""
    config = celery_config(settings or load_settings())
    return {name: config[name] for name in _CONNECTION_SETTINGS if name in config}


def client_app(settings: Settings | None = None, *, main: str = "tokenlife-client") -> Celery:
    """A Celery app of its own on tokenlife's broker (TOKENLIFE_BROKER_URL, else
    TOKENLIFE_REDIS_URL) and result backend, sending to tokenlife's queue: a second app
    beside the app's own, which may use any broker. It is never the current app."""
    settings = settings or load_settings()
    app = Celery(main, set_as_current=False)
    app.conf.update(
        broker_settings(settings),
        task_default_queue=settings.key_prefix,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app


@cache
def _default_app() -> Celery:
    # Built on first use, from the environment; one per process.
    return client_app()


# A child of os.fork (gunicorn's workers, any pre-forking server) builds its own app: the
# parent's holds broker and result backend connections whose sockets the child shares.
# kombu's and Celery's own after-fork resets are multiprocessing's hooks, which a plain
# os.fork doesn't run. The parent's app is dropped, not closed: closing would speak on
# the shared sockets.
os.register_at_fork(after_in_child=_default_app.cache_clear)


class ExchangeSignature(Signature):  # type: ignore[misc]  # Celery has no type hints
    """A signature of the exchange whose repr (a chain's and a group's with it) masks the
    code and state, as its `kwargsrepr` does. To Celery it is a plain Signature: the same
    dict in a message, and a copy pickled or rebuilt from a message (`Signature.from_dict`,
    in the worker that runs a chain) is a plain Signature. A copy Celery makes in this
    process (`clone`, as chains and groups do) keeps the masking."""

    def reprcall(self, *args: Any, **kwargs: Any) -> str:
        args, kwargs, _ = self._merge(args, kwargs, {}, force=True)
        shown = [*map(repr, args), *(f"{k}={v!r}" for k, v in masked(kwargs).items())]
        return f"{self['task']}({', '.join(shown)})"

    def clone(self, args: Any = None, kwargs: Any = None, **opts: Any) -> ExchangeSignature:
        copy = super().clone(args, kwargs, **opts)
        masked = ExchangeSignature(copy, app=self._app)
        masked._type = copy._type
        return masked


class ExchangeCode:
    """`tokenlife.exchange_code` as Celery's calling API has it (`s`, `si`, `signature`,
    `delay`, `apply_async`), with its arguments typed: the callback's `state` and either
    `code` or `error` (with `error_description`), and `iss` when the callback carried one
    (RFC 9207). The result is an `ExchangeSummary`. Sending the same `state` again is safe:
    the first summary comes back and the code is not sent twice.
    """

    name = "tokenlife.exchange_code"

    def __init__(self, app: Celery | None = None, queue: str | None = None) -> None:
        self._app = app
        self._queue = queue

    def using(self, app: Celery, *, queue: str | None = None) -> ExchangeCode:
        """The same task sent through `app`: one `client_app(settings)` made (the queue is
        its default), or an app of the caller's on tokenlife's broker, then with `queue`,
        tokenlife's key prefix."""
        return ExchangeCode(app, queue or str(app.conf.task_default_queue))

    @property
    def app(self) -> Celery:
        return self._app if self._app is not None else _default_app()

    @property
    def queue(self) -> str:
        return self._queue if self._queue is not None else str(self.app.conf.task_default_queue)

    def s(
        self,
        *,
        state: str,
        code: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        iss: str | None = None,
    ) -> ExchangeSignature:
        """A signature of the exchange. First in a chain: the result of a task before it
        would be passed as a positional argument, which the task refuses (use `si`)."""
        return self.signature(_callback(state, code, error, error_description, iss))

    def si(
        self,
        *,
        state: str,
        code: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        iss: str | None = None,
    ) -> ExchangeSignature:
        """An immutable signature: anywhere in a chain, a parent's result is not passed."""
        return self.signature(_callback(state, code, error, error_description, iss), immutable=True)

    def signature(self, kwargs: Mapping[str, Any], **options: Any) -> ExchangeSignature:
        """A signature with these task keyword arguments and Celery options (`countdown`,
        `expires`, `immutable`, ...). The queue is tokenlife's and the serializer JSON (the
        worker accepts nothing else); the code and state are masked in the message headers,
        task events and `celery inspect` (argsrepr/kwargsrepr)."""
        arguments = dict(kwargs)
        problem = check_callback(
            arguments.get("state"), arguments.get("code"), arguments.get("error"),
            arguments.get("iss"),
        )  # fmt: skip
        if problem is not None:
            raise UsageError(problem)
        options = {"queue": self.queue, "serializer": "json", **masked_reprs(arguments), **options}
        return ExchangeSignature(self.name, kwargs=arguments, app=self.app, **options)

    def delay(
        self,
        *,
        state: str,
        code: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        iss: str | None = None,
    ) -> AsyncResult:
        """Send the exchange now; `.get(timeout=...)` gives the `ExchangeSummary`."""
        return self.s(
            state=state, code=code, error=error, error_description=error_description, iss=iss
        ).apply_async()

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the exchange with Celery options (`countdown`, `expires`, `link`, ...), as
        Celery's `Task.apply_async(args, kwargs, **options)`: the task takes keyword
        arguments only, so `args` must be empty."""
        if args:
            raise UsageError(
                "tokenlife.exchange_code takes keyword arguments only: "
                "apply_async(kwargs={'state': ..., 'code': ...})"
            )
        return self.signature(kwargs or {}).apply_async(**options)


def _callback(
    state: str,
    code: str | None,
    error: str | None,
    error_description: str | None,
    iss: str | None,
) -> dict[str, Any]:
    # Only what the callback carried: a message names no argument the task would default.
    given = {"state": state, "code": code, "error": error,
             "error_description": error_description, "iss": iss}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


exchange_code = ExchangeCode()
