"""The dashboard's handlers: thin, over services/dashboard.py and the login in session.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web
from celery import Celery
from multidict import MultiDictProxy

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.dashboard_sessions import DashboardSessions
from tokenlife.core.connect_session import SessionRequestError, parse_session_request
from tokenlife.core.events import iso8601
from tokenlife.errors import UnknownConnectionError, UnknownIntegrationError
from tokenlife.runtime import Runtime
from tokenlife.services.dashboard import DashboardReader
from tokenlife.web.auth import ApiKey, authenticate
from tokenlife.web.connect_sessions import connect_link
from tokenlife.web.dashboard import pages
from tokenlife.web.dashboard.sections import dashboard_body
from tokenlife.web.dashboard.session import (
    COOKIE,
    CSRF_FIELD,
    MAX_SESSION_ID,
    Login,
    clear_cookie,
    cross_site,
    csrf_ok,
    current_login,
    request_secure,
    set_cookie,
)
from tokenlife.web.refresh_queue import queue_refresh

log = logging.getLogger(__name__)
# "Refresh now" waits this long for the worker's outcome before saying "queued".
REFRESH_WAIT_SECONDS = 8.0
CSRF_REFUSED = (
    "Refused: the form's CSRF token is missing or wrong. Reload the dashboard and try again."
)
HEADERS = {
    "Content-Security-Policy": pages.CSP,
    # Not the app-wide no-referrer: under it a browser sends `Origin: null` with a form
    # (https://fetch.spec.whatwg.org/#serializing-a-request-origin), and the origin check of
    # session.cross_site would refuse our own forms. Still nothing leaves this site.
    "Referrer-Policy": "same-origin",
}
STATIC_TYPES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


@dataclass(frozen=True, slots=True)
class Dashboard:
    runtime: Runtime
    keys: list[ApiKey]
    celery: Celery
    sessions: DashboardSessions
    reader: DashboardReader
    connect_sessions: ConnectSessions


DASHBOARD = web.AppKey("dashboard", Dashboard)
Handler = Callable[[web.Request, Dashboard, Login], Awaitable[web.StreamResponse]]


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location, headers=HEADERS)


def logged_in(
    handler: Handler, *, changes_state: bool
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Run `handler` with the request's login; a page without one goes to the login form,
    a form without the session's CSRF token (or sent from another site) is refused."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        dash = request.app[DASHBOARD]
        if changes_state and cross_site(request):
            return html(
                pages.error_page(None, "Refused: this form was sent from another site."), 403
            )
        login = await current_login(request, dash.sessions, dash.keys)
        if login is None:
            if changes_state:
                return html(pages.error_page(None, "Your session has ended; log in again."), 403)
            raise see_other("/dashboard/login")
        if changes_state:
            form = await request.post()
            if not csrf_ok(login, form.get(CSRF_FIELD)):
                return html(pages.error_page(login, CSRF_REFUSED), 403)
        return await handler(request, dash, login)

    return wrapped


async def login_form(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    if await current_login(request, dash.sessions, dash.keys) is not None:
        raise see_other("/dashboard")
    return html(pages.login_page(insecure=_insecure(request)))


def _insecure(request: web.Request) -> bool:
    """Plain http to another machine: a Secure cookie set now would be dropped."""
    return (
        request.scheme == "http"
        and request_secure(request)
        and (request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() != "https")
    )


async def login(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    if cross_site(request):
        return html(pages.error_page(None, "Refused: this form was sent from another site."), 403)
    form = await request.post()
    submitted = form.get("api_key")
    key = None
    if isinstance(submitted, str) and submitted.strip():
        key = authenticate(f"Bearer {submitted.strip()}", dash.keys)
    if key is None:
        # For an operator watching for key guessing; the submitted value is never logged.
        log.warning("dashboard: failed login from %s", request.remote)
        return html(pages.login_page("That is not a valid API key.", _insecure(request)), 401)
    previous = request.cookies.get(COOKIE)
    if previous and len(previous) <= MAX_SESSION_ID:
        # A new login ends this browser's previous session rather than leaving it alive
        # beside the new one (renew the session id at login, OWASP:
        # https://cheatsheetseries.owasp.org/cheatsheets/Session_Management_Cheat_Sheet.html).
        await dash.sessions.delete(previous)
    session_id = await dash.sessions.create(key.digest, time.time())
    response = see_other("/dashboard")
    set_cookie(response, request, session_id)
    raise response


async def logout(request: web.Request, dash: Dashboard, login: Login) -> web.StreamResponse:
    await dash.sessions.delete(login.session_id)
    response = see_other("/dashboard/login")
    clear_cookie(response, request)
    raise response


async def overview(request: web.Request, dash: Dashboard, login: Login) -> web.StreamResponse:
    figures = await dash.reader.read(login.key.allows, time.time())
    notice = await dash.sessions.pop_notice(login.session_id)
    return html(pages.page("Dashboard", dashboard_body(figures, login), login, notice))


def _target(form: MultiDictProxy[Any], login: Login) -> tuple[str, str]:
    """The connection a form names, when the login's key may use its integration."""
    integration, connection_id = form.get("integration"), form.get("connection_id")
    if not isinstance(integration, str) or not isinstance(connection_id, str):
        raise UnknownConnectionError("no connection named in the form")
    if not integration or not connection_id:
        raise UnknownConnectionError("no connection named in the form")
    if not login.key.allows(integration):  # 404, as for a connection that doesn't exist
        raise UnknownIntegrationError(f"this API key may not use integration {integration!r}")
    return integration, connection_id


async def refresh(request: web.Request, dash: Dashboard, login: Login) -> web.StreamResponse:
    try:
        integration, connection_id = _target(await request.post(), login)
        dash.runtime.exchange.integration(integration)

        async def queue(due: float) -> None:
            await queue_refresh(dash.celery, integration, connection_id, due)

        outcome, after, refusal = await dash.reader.refresh_now(
            integration, connection_id, queue, wait_seconds=REFRESH_WAIT_SECONDS, clock=time.time
        )
    except (UnknownConnectionError, UnknownIntegrationError) as exc:
        return html(pages.error_page(login, str(exc)), 404)
    name = f"{integration}/{connection_id}"
    if refusal is not None:  # nothing queued: why, and what fixes it (core.refresh_refusal)
        notice = f"{name} was not refreshed: {refusal.reason}. Fix: {refusal.fix}"
    else:
        notice = {
            "refreshed": f"Refreshed {name}: status {after.status.value}.",
            "failed": f"Refresh of {name} failed: {after.last_error or 'see the alerts'}; "
                      f"status {after.status.value}.",
            "queued": f"Refresh of {name} queued; the worker has not finished it yet.",
        }[outcome]  # fmt: skip
    log.info("dashboard: refresh of %s: %s", name, outcome)
    await dash.sessions.set_notice(login.session_id, notice)
    raise see_other("/dashboard")


async def reconnect_link(request: web.Request, dash: Dashboard, login: Login) -> web.StreamResponse:
    try:
        integration, connection_id = _target(await request.post(), login)
        found = dash.runtime.exchange.integration(integration)
    except (UnknownConnectionError, UnknownIntegrationError) as exc:
        return html(pages.error_page(login, str(exc)), 404)
    try:
        wanted = parse_session_request({"integration": integration, "connection_id": connection_id})
    except SessionRequestError as exc:
        return html(pages.error_page(login, str(exc)), 400)
    token, session = await dash.connect_sessions.create(wanted, time.time())
    log.info("dashboard: connect session created for %s/%s", integration, connection_id)
    url = connect_link(found, token)
    return html(pages.connect_link_page(login, integration, connection_id, url,
                                        iso8601(session.expires_at) or ""))  # fmt: skip


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound()
    return web.Response(body=_static(name), content_type=STATIC_TYPES[name])


@cache
def _static(name: str) -> bytes:
    return resources.files("tokenlife.web.dashboard").joinpath("static", name).read_bytes()
