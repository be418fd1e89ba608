"""The pages a person reads at /connect and /oauth/callback: what happened, in words they
can pass on, and for a refused sign-in what the provider said and what to change. Every
text is escaped (an error_description is the provider's own text)."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from tokenlife.core.authorization_error_vendors import OWN_FIXES
from tokenlife.core.authorization_errors import Refusal, bounded, clean_error, diagnose_refusal
from tokenlife.core.events import REFRESH_TOKEN_MISSING_MESSAGE

HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
}
# The provider's error_description as shown: at most this long.
SHOWN_DESCRIPTION = 300


def rejected_page(summary: dict[str, Any], query: Any) -> web.Response:
    """tokenlife refused the callback before any exchange (its summary names no
    integration): an unknown, expired or used state, or a callback without one. The error
    code still says what went wrong; its free text is not shown, because without a state
    of ours anyone could have written it (a link that puts "call support at ..." on this
    domain)."""
    if "error" in query:
        error = clean_error(query["error"])
        diagnosis = diagnose_refusal(Refusal(error, None))
        return page(400, "The sign-in service refused the sign-in.",
                    f"It answered: {error}. What to change:",
                    [*_steps(diagnosis.as_list()),
                     "Then start connecting the account again from the app."])  # fmt: skip
    if summary.get("error") == "invalid_state":
        return page(400, "This sign-in link has expired or was already used.",
                    "Start connecting the account again.")  # fmt: skip
    return page(400, "This sign-in response is not complete.",
                "The page was opened without the sign-in service's answer. Start connecting "
                "the account again.")  # fmt: skip


def _steps(diagnosis: list[dict[str, Any]]) -> list[str]:
    return [f"{d.get('cause')} Fix: {d.get('fix')}" for d in diagnosis if d.get("fix")]


def result_page(summary: dict[str, Any]) -> web.Response:
    outcome = summary.get("outcome")
    if outcome == "failed":
        error = summary.get("error") or "unknown_error"
        said = bounded(summary.get("error_description"), SHOWN_DESCRIPTION)
        whose = "tokenlife" if error in OWN_FIXES else "The provider"
        steps = _steps(summary.get("diagnosis") or [])
        return page(400, "The account could not be connected.",
                    f"{whose} said: {error}" + (f" ({said})" if said else "") + "."
                    + (" What to change (please tell your administrator):" if steps else ""),
                    steps)  # fmt: skip
    if outcome == "refresh_token_missing":
        steps = summary.get("fixes") or []
        return page(200, "Connected, but it won't stay connected.",
                    f"{REFRESH_TOKEN_MISSING_MESSAGE} Please tell your administrator:",
                    steps)  # fmt: skip
    return page(200, "The account is connected.", "You can close this page.")


def unavailable(text: str, retry_after: int) -> web.Response:
    """503 with Retry-After (RFC 9110 §10.2.3), as a page a person reads."""
    response = page(503, "Connecting is not possible right now.", text)
    response.headers["Retry-After"] = str(retry_after)
    return response


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
