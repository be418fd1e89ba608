"""The dashboard's pages as HTML strings. Every value that comes from data goes through
`h` (html.escape, quotes too): connection ids, integration names, errors and alert texts
are all user or provider data."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template

from tokenlife.core.events import iso8601
from tokenlife.core.refresh_chart import relative
from tokenlife.web.dashboard.session import CSRF_FIELD, Login

# Scripts and styles from this origin only; no inline script, no inline style, no CDN.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def h(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@cache
def template(name: str) -> Template:
    text = resources.files("tokenlife.web.dashboard").joinpath("templates", name).read_text()
    return Template(text)


def page(title: str, body: str, login: Login | None = None, notice: str | None = None) -> str:
    account = ""
    if login is not None:
        scope = login.key.integrations
        who = "every integration" if scope is None else ", ".join(sorted(scope))
        account = (
            f'<div class="account"><span>key for {h(who)}</span>'
            f'<form method="post" action="/dashboard/logout">{csrf_input(login)}'
            '<button type="submit" id="logout">Log out</button></form></div>'
        )
    shown = f'<p class="notice" role="status" id="notice">{h(notice)}</p>' if notice else ""
    return template("layout.html").substitute(
        title=h(title), account=account, notice=shown, body=body
    )


def login_page(error: str | None = None, insecure: bool = False) -> str:
    warning = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    if insecure:
        warning += (
            '<p class="error">This page came over plain http to a host that is not this '
            "machine: the browser will not keep the Secure session cookie, and the key would "
            "cross the network unencrypted. Serve tokenlife behind https (a proxy that sets "
            "<code>X-Forwarded-Proto: https</code>); see docs/dashboard.md.</p>"
        )
    return page("Log in", template("login.html").substitute(warning=warning))


def csrf_input(login: Login) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{h(login.session.csrf_token)}">'


def when(timestamp: float | None, now: float) -> str:
    """A time as ISO 8601 UTC with a relative hint; the script shows it in local time."""
    if timestamp is None:
        return "—"
    stamp = iso8601(timestamp)
    return f'<time datetime="{h(stamp)}" title="{h(stamp)}">{h(relative(timestamp - now))}</time>'


def connect_link_page(
    login: Login, integration: str, connection_id: str, url: str, expires_at: str
) -> str:
    body = f"""<section class="panel" id="connect-link">
<h2>Reconnect link</h2>
<p>For <strong>{h(integration)}</strong> / <code>{h(connection_id)}</code>. It works once,
until {h(expires_at)}: send it to the person who owns the account (not by e-mail: mail
scanners open links and would spend it).</p>
<div class="copy-row"><input id="link" type="text" readonly value="{h(url)}">
<button type="button" data-copy="link">Copy link</button></div>
<p><a href="/dashboard">Back to the dashboard</a></p>
</section>"""
    return page("Reconnect link", body, login)


def error_page(login: Login | None, message: str) -> str:
    body = f'<section class="panel"><p class="error" role="alert">{h(message)}</p>'
    body += '<p><a href="/dashboard">Back to the dashboard</a></p></section>'
    return page("Error", body, login)
