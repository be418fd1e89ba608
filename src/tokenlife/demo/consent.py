"""The demo provider's consent page: what the app asked for, who signs in, Allow or Cancel.

The form posts back to the authorization endpoint with the request's own parameters, so a
test consents with one plain HTTP POST of the same fields a browser sends.
"""

from __future__ import annotations

import html

from aiohttp import web

# Filled in on the page, not carried over from the request.
_ASKED_ON_THE_PAGE = ("login_hint", "decision", "deny")
DEFAULT_USER = "ada@example.com"


def page(title: str, params: dict[str, str], offline_note: str, rule: str) -> web.Response:
    hidden = "".join(
        f"<input type=hidden name='{html.escape(k)}' value='{html.escape(v)}'>"
        for k, v in params.items()
        if k not in _ASKED_ON_THE_PAGE
    )
    asked = params.get("scope", "").split()
    scopes = "".join(f"<li><code>{html.escape(scope)}</code></li>" for scope in asked)
    user = html.escape(params.get("login_hint") or DEFAULT_USER)
    body = f"""<!doctype html><html lang=en><meta charset=utf-8>
<meta name=viewport content='width=device-width'>
<title>{html.escape(title)}: sign in</title>
<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>
<h1>{html.escape(title)} (demo)</h1>
<p><b>{html.escape(params.get("client_id", ""))}</b> wants to access your account:</p>
<ul>{scopes or "<li>(no scopes)</li>"}</ul>
<p>{html.escape(offline_note)}</p>
<p style='color:#555'>{html.escape(rule)}</p>
<form method=post>{hidden}
<label>Signed in as <input name=login_hint value='{user}' size=30></label>
<p><button name=decision value=allow>Allow</button>
<button name=decision value=deny>Cancel</button></p>
</form></body></html>"""
    return web.Response(
        text=body,
        content_type="text/html",
        headers={
            # No script, no frames; the form's redirect goes to the app's own callback.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Frame-Options": "DENY",
        },
    )
