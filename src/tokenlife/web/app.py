"""The aiohttp application: health for operators, the token API for apps."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web
from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.fleet_metrics import FleetMetrics
from tokenlife.celery_config import celery_config
from tokenlife.core.refresh_refusal import requested_due
from tokenlife.errors import (
    ConnectionBusyError,
    CorruptRecordError,
    DecryptionError,
    IntegrationUnavailableError,
    ReauthorizationRequiredError,
    TokenlifeError,
    TransientError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.runtime import Runtime
from tokenlife.services.connection_pages import connections_page, status_filter
from tokenlife.web.auth import API_KEY, ApiKey, authenticate, parse_api_keys
from tokenlife.web.connect import callback, connect
from tokenlife.web.connect_sessions import create_session
from tokenlife.web.dashboard import setup_dashboard
from tokenlife.web.events_api import setup_events_api
from tokenlife.web.metrics import METRICS, metrics
from tokenlife.web.problems import problem
from tokenlife.web.refresh_queue import queue_refresh
from tokenlife.web.token_answers import (
    reauthorization_required,
    refusal_answer,
    token_answer,
)

log = logging.getLogger(__name__)
RUNTIME = web.AppKey("runtime", Runtime)
KEYS = web.AppKey("api_keys", list[ApiKey])
CELERY = web.AppKey("celery", Celery)
SESSIONS = web.AppKey("connect_sessions", ConnectSessions)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(runtime: Runtime) -> web.Application:
    settings = runtime.config.settings
    app = web.Application(
        client_max_size=settings.api_max_body_bytes,
        middlewares=[
            security_headers_middleware,
            errors_middleware,
            timeout_middleware,
            auth_middleware,
        ],
    )
    app[RUNTIME] = runtime
    app[KEYS] = parse_api_keys(settings.api_keys)
    celery = Celery("tokenlife-api", set_as_current=False)
    celery.conf.update(celery_config(settings))
    app[CELERY] = celery
    app[SESSIONS] = ConnectSessions(
        runtime.redis, runtime.keys, settings.connect_session_ttl_seconds
    )
    integrations = runtime.config.integrations
    providers = {integration.provider for integration in integrations.values()}
    app[METRICS] = FleetMetrics(runtime.redis, runtime.keys, integrations, providers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/api/integrations", list_integrations)
    app.router.add_get("/api/connections", list_connections)
    app.router.add_get("/api/connections/{integration}/{connection_id}", show_connection)
    app.router.add_post("/api/connections/{integration}/{connection_id}/token", access_token)
    app.router.add_post("/api/connections/{integration}/{connection_id}/refresh", refresh_now)
    app.router.add_delete("/api/connections/{integration}/{connection_id}", delete_connection)
    app.router.add_post("/api/connect-sessions", create_session_route)
    setup_events_api(app, runtime)  # GET /api/events
    app.router.add_get("/connect/{integration}", connect_route)
    app.router.add_get("/oauth/callback", callback_route)
    setup_dashboard(app, runtime, app[KEYS], celery)
    app.on_cleanup.append(_close_celery)
    return app


async def _close_celery(app: web.Application) -> None:
    app[CELERY].close()


async def create_session_route(request: web.Request) -> web.StreamResponse:
    app = request.app
    return await create_session(request, app[RUNTIME], app[SESSIONS], request[API_KEY])


async def connect_route(request: web.Request) -> web.StreamResponse:
    return await connect(request, request.app[RUNTIME], request.app[SESSIONS])


async def callback_route(request: web.Request) -> web.StreamResponse:
    return await callback(request, request.app[RUNTIME], request.app[CELERY])


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is a JSON body naming the problem; never a token, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except CorruptRecordError as exc:  # a half-written record: as good as absent
        return problem(404, "not_found", str(exc), resource="connection", corrupt_record=True)
    except IntegrationUnavailableError as exc:
        wait = max(1, math.ceil(exc.next_try_at - time.time()))
        response = problem(503, "integration_unavailable", str(exc), retry_after=wait)
        response.headers["Retry-After"] = str(wait)
        return response
    # `resource` tells the two apart for clients, which must not parse the message.
    except UnknownIntegrationError as exc:
        return problem(404, "not_found", str(exc), resource="integration")
    except UnknownConnectionError as exc:
        return problem(404, "not_found", str(exc), resource="connection")
    except UsageError as exc:
        return problem(400, "bad_request", str(exc))
    except ConnectionBusyError as exc:  # the provider is not at fault: say what is
        response = problem(503, "connection_busy", str(exc))
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 5)))
        return response
    except TransientError as exc:
        response = problem(503, "provider_unavailable", str(exc))
        # RFC 9110 §10.2.3: delay-seconds, an integer.
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 5)))
        return response
    except (RedisError, OperationalError) as exc:
        log.warning("storage or broker unavailable: %s", type(exc).__name__)
        response = problem(503, "unavailable", "storage or broker unavailable; try again")
        response.headers["Retry-After"] = "2"
        return response
    except DecryptionError:
        # A damaged ciphertext or a key missing from the list: the stored token stays as it
        # is, since a new key would not decrypt it either.
        return problem(409, "undecryptable", UNDECRYPTABLE)
    except TokenlifeError as exc:
        log.warning("request failed: %s", exc)
        return problem(500, "internal_error", "the request failed; see the service log")


UNDECRYPTABLE = (
    "the stored token can't be decrypted with the configured keys; check "
    "TOKENLIFE_ENCRYPTION_KEYS (it must still list the key the token was saved with), or "
    "delete the connection and connect again"
)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # token responses, RFC 6749 §5.1
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so errors, redirects and unknown routes carry the headers too."""
    # client_max_size applies only when a handler reads the body; refuse early instead.
    if (request.content_length or 0) > request.app[RUNTIME].config.settings.api_max_body_bytes:
        response: web.StreamResponse = problem(413, "too_large", "the request body is too large")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            for name, value in SECURITY_HEADERS.items():
                exc.headers.setdefault(name, value)
            raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def timeout_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[RUNTIME].config.settings.api_request_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            return await handler(request)
    except TimeoutError:
        return problem(504, "timeout", f"the request took longer than {limit:g} s")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    keys: list[ApiKey] = request.app[KEYS]
    key = authenticate(request.headers.get("Authorization"), keys)
    if key is None:
        return problem(401, "unauthorized", "a valid Bearer API key is required")
    integration = request.match_info.get("integration") or request.query.get("integration")
    if integration is not None and not key.allows(integration):
        return problem(403, "forbidden", f"this API key may not use integration {integration!r}")
    request[API_KEY] = key
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


@cache
def openapi_document() -> bytes:
    """The OpenAPI 3.1 document, as shipped (tests/e2e/test_openapi.py keeps it in sync)."""
    return resources.files("tokenlife.web").joinpath("openapi.json").read_bytes()


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    checks: dict[str, Any] = {}
    try:
        checks["redis"] = bool(await runtime.redis.ping())
    except Exception as exc:
        checks["redis"] = False
        log.warning("readiness: Redis: %s", exc)
    heartbeat = None
    if checks["redis"]:
        heartbeat = await runtime.redis.get(runtime.keys.heartbeat)
    interval = runtime.config.settings.refresh_due_interval_seconds
    age = None if heartbeat is None else time.time() - float(heartbeat)
    # Beat and a worker are alive when a refresh_due tick ran lately.
    checks["beat"] = age is not None and age <= max(30.0, 10 * interval)
    checks["beat_last_tick_seconds_ago"] = None if age is None else round(age, 1)
    # One vendor's outage does not make the service unready (every other integration
    # works): unavailable integrations are listed, and only Redis and beat decide.
    checks["integrations_unavailable"] = [
        entry.as_json() for entry in runtime.config.integrations.unavailable.values()
    ]
    ready = checks["redis"] and checks["beat"]
    return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)


async def list_integrations(request: web.Request) -> web.Response:
    key = request[API_KEY]
    runtime = request.app[RUNTIME]
    items = [
        {"name": i.name, "provider": i.provider, "scopes": list(i.scopes)}
        for i in runtime.config.integrations.values()
        if key.allows(i.name)
    ]
    return web.json_response({"integrations": items})


async def list_connections(request: web.Request) -> web.Response:
    key = request[API_KEY]
    runtime = request.app[RUNTIME]
    wanted = request.query.get("integration")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return problem(400, "bad_request", "limit must be an integer")
    try:
        status = status_filter(request.query.get("status"))
    except ValueError as exc:
        return problem(400, "bad_request", str(exc))
    names = [n for n in sorted(runtime.config.integrations) if key.allows(n)]
    if wanted is not None:
        runtime.exchange.integration(wanted)  # 404 for an unknown one
        names = [wanted] if key.allows(wanted) else []
    page = await connections_page(
        runtime.listing, names, status, limit, request.query.get("cursor"), time.time()
    )
    return web.json_response(
        {"connections": [c.as_json() for c in page.connections], "next_cursor": page.next_cursor}
    )


async def show_connection(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    integration = request.match_info["integration"]
    runtime.exchange.integration(integration)
    connection = await runtime.tokens.get(integration, request.match_info["connection_id"])
    return web.json_response(connection.as_json())


async def access_token(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    integration = request.match_info["integration"]
    connection_id = request.match_info["connection_id"]
    try:
        token = await runtime.access.get(integration, connection_id)
    except ReauthorizationRequiredError as exc:
        connection = await runtime.tokens.get(integration, connection_id)
        return reauthorization_required(connection, str(exc))
    return web.json_response(token_answer(token, time.time()))


async def refresh_now(request: web.Request) -> web.Response:
    """Queue a refresh now; the worker does it as it does a scheduled one (or say why not:
    core.refresh_refusal)."""
    runtime = request.app[RUNTIME]
    integration = request.match_info["integration"]
    connection_id = request.match_info["connection_id"]
    runtime.exchange.integration(integration)
    connection = await runtime.tokens.get(integration, connection_id)
    now = time.time()
    refusal = connection.refresh_refusal(now)
    if refusal is not None:
        return refusal_answer(connection, refusal)
    due = requested_due(connection.next_refresh_at, now)
    await queue_refresh(request.app[CELERY], integration, connection_id, due)
    return web.json_response({"queued": True}, status=202)


async def delete_connection(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    result = await runtime.removal.delete(
        request.match_info["integration"], request.match_info["connection_id"], time.time()
    )
    return web.json_response(result)
