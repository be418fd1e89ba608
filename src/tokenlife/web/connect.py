"""The browser flow: /connect sends a user to the provider, /oauth/callback brings the code
to the worker and tells the person what happened, in words they can pass on.

/connect needs the token of a connect session (POST /api/connect-sessions) in its
`session` query parameter, and ties the flow to the browser that opened it with a cookie
the callback checks (RFC 6749 §10.12; OAuth 2.0 Security BCP, RFC 9700 §4.7.1)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from celery import Celery
from celery.result import AsyncResult
from redis.exceptions import RedisError

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.adapters.keys import PENDING_AUTHORIZATION_TTL_SECONDS
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.authorization_errors import MAX_ERROR, bounded
from tokenlife.core.connect_links import SESSION_PARAMETER
from tokenlife.core.connect_links import allowed_return_to as allowed_return_to  # its old home
from tokenlife.core.connect_session import plausible_token, token_hash
from tokenlife.errors import (
    IntegrationUnavailableError,
    TransientError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.runtime import Runtime
from tokenlife.services.callback import masked_reprs
from tokenlife.web.pages import page, rejected_page, result_page, unavailable

log = logging.getLogger(__name__)
# One cookie per flow, named after its state, so two flows in one browser (two tabs) don't
# overwrite each other's binding.
BINDING_COOKIE_PREFIX = "tokenlife_flow_"
# The states tokenlife makes (secrets.token_urlsafe); anything else is not looked up here.
_STATE = re.compile(r"[A-Za-z0-9_-]{16,512}")


def binding_cookie(state: str) -> str:
    return BINDING_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:32]


def cookie_path(redirect_uri: str) -> str:
    """Only the callback gets the cookie: the redirect_uri's path, as the browser sees it."""
    return urlsplit(redirect_uri).path or "/"


async def connect(
    request: web.Request, runtime: Runtime, sessions: ConnectSessions
) -> web.StreamResponse:
    try:
        # Before the session is consumed: a link that can't be used now stays usable.
        integration = runtime.exchange.integration(request.match_info["integration"])
    except UnknownIntegrationError:
        return page(404, "This connect link is not valid.", "Ask the app for a new connect link.")
    except IntegrationUnavailableError as exc:
        log.warning("connect to %s refused: %s", exc.integration, exc)
        wait = max(1, math.ceil(exc.next_try_at - time.time()))
        return unavailable(
            f"The sign-in service of {exc.integration} can't be reached right now. Your "
            "link still works: open it again in a few minutes.",
            wait,
        )
    if request.method == "HEAD":
        # Link checkers and previews probe with HEAD; only a GET spends the session.
        return page(200, "Connect an account.", "Open this link in your browser.")
    token = request.query.get(SESSION_PARAMETER)
    # Consumed before anything else: a link works once, whatever happens next.
    try:
        session = (
            await sessions.consume(integration.name, token) if plausible_token(token) else None
        )
    except (TransientError, RedisError) as exc:  # maybe consumed, maybe not
        log.warning("connect to %s failed: storage unavailable (%s)", integration.name,
                    type(exc).__name__)  # fmt: skip
        return unavailable(
            "Connecting is not possible right now. Try the link again in a moment; if it is "
            "then refused, ask the app for a new connect link.",
            5,
        )
    if session is None:
        minutes = max(1, round(runtime.config.settings.connect_session_ttl_seconds / 60))
        log.warning("connect to %s refused: no valid connect session", integration.name)
        response = page(401, "This connect link is not valid.",
                        f"A connect link works once, and for {minutes} minutes only. Go back to "
                        "the app and ask it for a new connect link.")  # fmt: skip
        # RFC 9110 §15.5.2: a 401 names how to authenticate; here, with a connect session.
        response.headers["WWW-Authenticate"] = 'ConnectSession realm="tokenlife"'
        return response
    nonce = secrets.token_urlsafe(32)
    try:
        started = await runtime.exchange.start_authorization(
            session.integration,
            session.connection_id,
            time.time(),
            return_to=session.return_to,
            end_user=session.end_user,
            browser_binding=token_hash(nonce),
        )
    except UsageError as exc:
        return page(400, "This link is not valid.", str(exc))
    except (TransientError, RedisError) as exc:
        # The session is spent (a link works once), so this link won't work again.
        log.warning("connect to %s failed after its session was used: %s", integration.name,
                    type(exc).__name__)  # fmt: skip
        return unavailable(
            "Connecting is not possible right now. This link has been used up: go back to "
            "the app and ask it for a new connect link in a few minutes.",
            5,
        )
    response = web.Response(status=302, headers={"Location": started.url})
    response.set_cookie(
        binding_cookie(started.state),
        nonce,
        max_age=PENDING_AUTHORIZATION_TTL_SECONDS,
        path=cookie_path(integration.redirect_uri),
        # Secure whenever the browser talks https to us, also behind a TLS-ending proxy.
        secure=request.secure or integration.redirect_uri.startswith("https:"),
        httponly=True,
        # Lax, not Strict: the provider sends the browser back with a cross-site top-level
        # GET, which Lax cookies accompany and Strict ones don't.
        samesite="Lax",
    )
    return response


async def bound_pending(
    request: web.Request, runtime: Runtime, state: str
) -> tuple[PendingAuthorization | None, web.Response | None]:
    """The pending authorization, and a refusal when it was started at /connect in another
    browser. The state is only read: a refused callback leaves it for the rightful one."""
    if not _STATE.fullmatch(state):
        return None, None  # not a state we made; the worker refuses it
    pending = await runtime.exchange.pending_authorization(state)
    if pending is None or pending.browser_binding is None:
        return pending, None
    presented = request.cookies.get(binding_cookie(state))
    if presented is not None and hmac.compare_digest(
        token_hash(presented), pending.browser_binding
    ):
        return pending, None
    log.warning(
        "callback for %s/%s refused: not the browser that started it",
        pending.integration, pending.connection_id,
    )  # fmt: skip
    return pending, page(400, "This sign-in was started in another browser.",
                         "Open the connect link from the app again and finish signing in in "
                         "the same browser.")  # fmt: skip


async def callback(request: web.Request, runtime: Runtime, celery: Celery) -> web.StreamResponse:
    query = request.query
    state = query.get("state", "")
    pending, refused = await bound_pending(request, runtime, state)
    if refused is not None:
        return refused
    response = await _exchange(runtime, celery, query, state)
    if pending is not None and pending.browser_binding is not None:
        response.del_cookie(binding_cookie(state), path=cookie_path(pending.redirect_uri))
    return response


def send_exchange(celery: Celery, kwargs: dict[str, Any]) -> AsyncResult:
    """Queue the code exchange; the message headers show the code and state masked."""
    return celery.send_task("tokenlife.exchange_code", kwargs=kwargs, **masked_reprs(kwargs))


async def _exchange(runtime: Runtime, celery: Celery, query: Any, state: str) -> web.StreamResponse:
    kwargs: dict[str, Any] = {"state": state}
    if "error" in query:
        # Both come from the browser's query string: bounded before they are queued.
        kwargs |= {"error": query["error"][:MAX_ERROR * 4],
                   "error_description": bounded(query.get("error_description"), 2000)}  # fmt: skip
    else:
        kwargs["code"] = query.get("code")
    if "iss" in query:  # RFC 9207: the worker checks it against the integration's issuer
        kwargs["iss"] = query["iss"]
    result = await asyncio.to_thread(send_exchange, celery, kwargs)
    # Poll rather than block a thread per waiting user in result.get().
    deadline = time.monotonic() + runtime.config.settings.api_callback_wait_seconds
    while not await asyncio.to_thread(result.ready):
        if time.monotonic() > deadline:
            return page(202, "Still working on it.",
                        "The account is being connected; this page can be closed. Check back "
                        "in a minute.")  # fmt: skip
        await asyncio.sleep(0.1)
    summary = await asyncio.to_thread(result.get, propagate=False)
    if not isinstance(summary, dict):
        return page(500, "Something went wrong.", "The exchange failed; see the worker log.")
    if summary.get("integration") is None and summary.get("error") in (
        "invalid_state", "invalid_request",
    ):  # fmt: skip
        # Refused before any exchange: no such state, or a callback without one.
        return rejected_page(summary, query)
    return_to = summary.get("return_to")
    if return_to:
        outcome = {k: summary.get(k) for k in ("integration", "connection_id", "outcome",
                                               "status", "error")}  # fmt: skip
        separator = "&" if urlsplit(return_to).query else "?"
        shown = {k: v for k, v in outcome.items() if v is not None}
        return web.Response(status=302, headers={"Location": return_to + separator +
                                                 urlencode(shown)})  # fmt: skip
    return result_page(summary)
