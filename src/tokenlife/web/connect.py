"""The browser flow: /connect sends a user to the provider, /oauth/callback brings the code
to the worker and tells the person what happened, in words they can pass on."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from celery import Celery

from tokenlife.core.events import REFRESH_TOKEN_MISSING_MESSAGE
from tokenlife.errors import UsageError
from tokenlife.runtime import Runtime

HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
}


def allowed_return_to(value: str, allowed: tuple[str, ...]) -> bool:
    """Only absolute http(s) URLs under a configured prefix: no open redirects."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    for prefix in allowed:
        allowed_parts = urlsplit(prefix)
        # Scheme and host compared exactly: "https://app.example.com" must not admit
        # "https://app.example.com.evil.io".
        if (parts.scheme, parts.netloc.lower()) == (
            allowed_parts.scheme, allowed_parts.netloc.lower()
        ) and parts.path.startswith(allowed_parts.path):  # fmt: skip
            return True
    return False


async def connect(request: web.Request, runtime: Runtime) -> web.StreamResponse:
    settings = runtime.config.settings
    integration = request.match_info["integration"]
    connection_id = request.query.get("connection_id", "")
    return_to = request.query.get("return_to")
    if return_to is not None and not allowed_return_to(return_to, settings.api_return_to_allowed):
        fix = "Ask the administrator to add it to TOKENLIFE_API_RETURN_TO_ALLOWED."
        return page(400, "This return address is not allowed.", fix)
    try:
        request_ = await runtime.exchange.start_authorization(
            integration, connection_id, time.time(), return_to=return_to
        )
    except UsageError as exc:
        return page(400, "This link is not valid.", str(exc))
    raise web.HTTPFound(request_.url)


async def callback(request: web.Request, runtime: Runtime, celery: Celery) -> web.StreamResponse:
    query = request.query
    state = query.get("state", "")
    kwargs: dict[str, Any] = {"state": state}
    if "error" in query:
        kwargs |= {"error": query["error"], "error_description": query.get("error_description")}
    else:
        kwargs["code"] = query.get("code")
    result = await asyncio.to_thread(celery.send_task, "tokenlife.exchange_code", kwargs=kwargs)
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
    if summary.get("error") in ("invalid_state", "invalid_request"):
        return page(400, "This sign-in link has expired or was already used.",
                    "Start connecting the account again.")  # fmt: skip
    return_to = summary.get("return_to")
    if return_to:
        outcome = {k: summary.get(k) for k in ("integration", "connection_id", "outcome",
                                               "status", "error")}  # fmt: skip
        separator = "&" if urlsplit(return_to).query else "?"
        shown = {k: v for k, v in outcome.items() if v is not None}
        raise web.HTTPFound(return_to + separator + urlencode(shown))
    return result_page(summary)


def result_page(summary: dict[str, Any]) -> web.Response:
    outcome = summary.get("outcome")
    if outcome == "failed":
        detail = summary.get("error_description") or summary.get("error") or "unknown error"
        return page(400, "The account could not be connected.", f"The provider said: {detail}")
    if outcome == "refresh_token_missing":
        steps = summary.get("fixes") or []
        return page(200, "Connected, but it won't stay connected.",
                    f"{REFRESH_TOKEN_MISSING_MESSAGE} Please tell your administrator:",
                    steps)  # fmt: skip
    return page(200, "The account is connected.", "You can close this page.")


def page(status: int, heading: str, text: str, steps: list[str] | None = None) -> web.Response:
    items = "".join(f"<li>{html.escape(step)}</li>" for step in steps or [])
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width'>"
        f"<title>{html.escape(heading)}</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>{html.escape(heading)}</h1><p>{html.escape(text)}</p>"
        + (f"<ol>{items}</ol>" if items else "")
        + "</body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html",
                        headers=HTML_HEADERS)  # fmt: skip
