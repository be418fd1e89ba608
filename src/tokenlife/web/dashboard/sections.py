"""The dashboard page's sections, from the figures services/dashboard.py read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenlife.adapters.connection_record import Connection
from tokenlife.core.events import parse_iso8601
from tokenlife.core.notifications import TITLES
from tokenlife.core.refresh_refusal import RefreshRefusal
from tokenlife.services.dashboard import Attention, Figures
from tokenlife.web.dashboard.chart import chart_svg, legend
from tokenlife.web.dashboard.pages import csrf_input, h, when
from tokenlife.web.dashboard.session import Login

REASONS = {
    "refresh_failing": "the access token lapsed while refreshes fail",
    "client_secret_expired": "the access token lapsed: the provider refuses the expired "
    "client secret",
    "provider_degraded": "the access token lapsed while its provider's host fails: its "
    "scheduled refreshes are held until a probe gets an answer",
    "refresh_overdue": "the access token lapsed and no refresh has run yet",
    "refresh_token_may_be_lost": "new tokens could not be stored; a refresh must succeed",
    "refresh_token_missing": "no refresh token: the access token will lapse",
}

# When no alert named a fix: what the status itself calls for.
DEFAULT_FIXES = {
    "refresh_overdue": "Check that beat and a worker run (GET /readyz, `tokenlife doctor`), "
    "then press Refresh now.",
    "refresh_failing": "Check the provider's status and the last error; refreshes are retried "
    "with backoff, and Refresh now tries at once.",
    "refresh_token_may_be_lost": "Press Refresh now; if it fails, send a reconnect link.",
    "client_secret_expired": "Replace the integration's client secret and restart the worker "
    "and the API (alert.client_secret_expired has the steps); no reconnect is needed.",
    "provider_degraded": "Nothing to change here: check the provider's status page "
    "(alert.provider_degraded names the host). Refreshes resume by themselves when it "
    "answers; Refresh now, and apps asking for a token, get an attempt of their own. No "
    "reconnect is needed.",
    "reauthorization_required": "Send the account's owner a reconnect link.",
    "default": "Send the account's owner a reconnect link.",
}


def dashboard_body(figures: Figures, login: Login) -> str:
    return "".join((
        _statuses(figures), _attention(figures, login), _expiring(figures, login),
        _refreshes(figures), _alerts(figures), _dead_letters(figures),
    ))  # fmt: skip


def _statuses(figures: Figures) -> str:
    cards = "".join(
        f'<div class="card {h(s)}"><span class="label">{h(s.replace("_", " "))}</span>'
        f'<span class="figure" data-status="{h(s)}">{figures.by_status.get(s, 0)}</span></div>'
        for s in figures.statuses
    )
    head = "".join(f"<th>{h(s.replace('_', ' '))}</th>" for s in figures.statuses)
    rows = "".join(
        f'<tr data-integration="{h(name)}"><th scope="row">{h(name)}</th>'
        + "".join(f'<td data-status="{h(s)}">{counts.get(s, 0)}</td>' for s in figures.statuses)
        + "</tr>"
        for name, counts in sorted(figures.by_integration.items())
    )
    corrupt = ""
    if figures.corrupt_records:
        corrupt = (
            f'<p class="error">{figures.corrupt_records} stored record(s) are half-written '
            "or unreadable and are left out; DELETE them and connect again.</p>"
        )
    return f"""<section class="panel" id="statuses"><h2>Connections</h2>
<div class="cards" id="by-status">{cards}</div>{corrupt}
<table id="by-integration"><thead><tr><th>integration</th>{head}</tr></thead>
<tbody>{rows}</tbody></table></section>"""


def _attention(figures: Figures, login: Login) -> str:
    if not figures.attention:
        items = '<p class="muted">Nothing needs attention.</p>'
    else:
        items = "".join(_needing(a, figures.now, login) for a in figures.attention)
    more = ""
    if figures.attention_total > len(figures.attention):
        more = (f'<p class="muted">{len(figures.attention)} of {figures.attention_total} '
                "shown; `tokenlife connections list --status degraded` lists all.</p>")  # fmt: skip
    return f"""<section class="panel" id="attention"><h2>Needs attention
<span class="count">{figures.attention_total}</span></h2>{items}{more}</section>"""


def _needing(item: Attention, now: float, login: Login) -> str:
    c = item.connection
    last = dict(c.last_alert or {})
    kind = last.get("type")
    title = TITLES.get(str(kind), str(kind or "no alert yet"))
    reason = REASONS.get(c.status_reason or c.verdict.value, c.status_reason or "")
    causes = _causes(item.alert)
    fixes = [str(f) for f in last.get("fixes") or []]
    if item.alert:  # the diagnosed alert's fixes first, then the last alert's others
        diagnosed = [str(d.get("fix")) for d in item.alert.get("diagnosis") or [] if d.get("fix")]
        fixes = diagnosed + [f for f in fixes if f not in diagnosed]
    if not fixes:
        fixes = [DEFAULT_FIXES.get(c.status_reason or c.status.value, DEFAULT_FIXES["default"])]
    fix_list = "".join(f"<li>{h(f)}</li>" for f in fixes)
    error = f"<dt>last error</dt><dd><code>{h(c.last_error)}</code></dd>" if c.last_error else ""
    # Its own line: "access token expiring 1 s ago" read as if the token had expired.
    raised_at = parse_iso8601(last.get("occurred_at"))
    raised = "" if raised_at is None else f"<dt>alert raised</dt><dd>{when(raised_at, now)}</dd>"
    return f"""<article class="needing {h(c.status.value)}" data-integration="{h(c.integration)}"
 data-connection-id="{h(c.connection_id)}">
<header><span class="badge {h(c.status.value)}">{h(c.status.value.replace("_", " "))}</span>
<strong>{h(c.integration)}</strong> / <code class="cid">{h(c.connection_id)}</code>
<span class="muted">{h(reason)}</span></header>
<dl><dt>last alert</dt><dd>{h(title)}</dd>{raised}
<dt>access token expires</dt><dd>{when(c.expires_at, now)}</dd>{error}</dl>
{causes}<h4>Fix</h4><ol class="fixes">{fix_list}</ol>
<div class="actions">{_actions(c.integration, c.connection_id, login, c.refresh_refusal(now))}</div>
</article>"""


def _causes(alert: Mapping[str, Any] | None) -> str:
    if not alert:
        return ""
    title = TITLES.get(str(alert.get("type")), str(alert.get("type")))
    message = alert.get("message") or alert.get("error_description") or alert.get("error")
    rows = "".join(
        f'<li>{h(d.get("cause"))}<br><span class="muted">evidence: {h(d.get("evidence"))}'
        "</span></li>"
        for d in alert.get("diagnosis") or []
        if isinstance(d, dict)
    )
    text = f"<p>{h(message)}</p>" if message else ""
    head = f'<h4>Diagnosis <span class="muted">({h(title)})</span></h4>'
    return f'{head}{text}<ul class="causes">{rows}</ul>' if text or rows else ""


def _actions(
    integration: str, connection_id: str, login: Login, refusal: RefreshRefusal | None,
    *, explain: bool = True,
) -> str:  # fmt: skip
    """Refresh now only where a refresh can work (core.refresh_refusal, as POST /refresh
    decides); elsewhere why not (unless the table says it), beside the reconnect link."""
    hidden = (
        f'{csrf_input(login)}<input type="hidden" name="integration" value="{h(integration)}">'
        f'<input type="hidden" name="connection_id" value="{h(connection_id)}">'
    )
    refresh = ""
    if refusal is not None and explain:
        refresh = f'<p class="muted refusal">Refresh now can\'t help: {h(refusal.reason)}</p>'
    elif refusal is None:
        refresh = (f'<form method="post" action="/dashboard/refresh">{hidden}'
                   '<button type="submit" class="refresh">Refresh now</button></form>')  # fmt: skip
    return refresh + (
        f'<form method="post" action="/dashboard/connect-link">{hidden}'
        '<button type="submit" class="reconnect">Copy reconnect link</button></form>'
    )


def _row_actions(c: Connection, now: float, login: Login) -> str:
    refusal = c.refresh_refusal(now)
    return _actions(c.integration, c.connection_id, login, refusal, explain=False)


def _expiring(figures: Figures, login: Login) -> str:
    if not figures.expiring:
        return ('<section class="panel" id="expiring"><h2>Expiring in the next 7 days</h2>'
                '<p class="muted">No access token without a refresh token lapses in the next '
                "7 days.</p></section>")  # fmt: skip
    rows = "".join(
        f'<tr data-integration="{h(c.integration)}" data-connection-id="{h(c.connection_id)}">'
        f"<td>{h(c.integration)}</td><td><code>{h(c.connection_id)}</code></td>"
        f"<td>{h(c.status.value)}</td><td>{when(c.expires_at, figures.now)}</td>"
        f'<td class="actions">{_row_actions(c, figures.now, login)}</td></tr>'
        for c in figures.expiring
    )
    return f"""<section class="panel" id="expiring"><h2>Expiring in the next 7 days
<span class="count">{len(figures.expiring)}</span></h2>
<p class="muted">Access tokens without a refresh token: the account must reconnect before
they lapse.</p><table><thead><tr><th>integration</th><th>connection</th><th>status</th>
<th>expires</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>"""


def _refreshes(figures: Figures) -> str:
    return f"""<section class="panel" id="refreshes"><h2>Refreshes, last hour
<span class="count">{figures.refreshes.total}</span></h2>
{chart_svg(figures.refreshes)}{legend(figures.refreshes)}</section>"""


def _alerts(figures: Figures) -> str:
    if not figures.alerts:
        body = '<p class="muted">No alerts among the recent events.</p>'
    else:
        rows = "".join(
            f'<tr class="{h(a.severity)}">'
            f"<td>{when(parse_iso8601(a.data.get('occurred_at')), figures.now)}</td>"
            f'<td><span class="badge {h(a.severity)}">{h(a.severity)}</span></td>'
            f"<td>{h(TITLES.get(a.type, a.type))}</td><td>{h(a.data.get('integration'))}</td>"
            f"<td><code>{h(a.data.get('connection_id') or '—')}</code></td></tr>"
            for a in figures.alerts
        )
        body = (
            "<table><thead><tr><th>when</th><th>severity</th><th>alert</th><th>integration</th>"
            f"<th>connection</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<section class="panel" id="alerts"><h2>Latest alerts</h2>{body}</section>'


def _dead_letters(figures: Figures) -> str:
    if not figures.dead_letters:
        body = '<p class="muted">No notification was dead-lettered.</p>'
    else:
        rows = "".join(
            f"<tr><td>{when(d.dead_lettered_at, figures.now)}</td><td>{h(d.target)}</td>"
            f"<td>{h(TITLES.get(str(d.payload.get('type')), d.payload.get('type')))}</td>"
            f"<td>{h(d.payload.get('integration'))}</td><td>{h(d.payload.get('count'))}</td>"
            f"<td><code>{h(d.error)}</code></td></tr>"
            for d in figures.dead_letters
        )
        body = (
            "<table><thead><tr><th>when</th><th>target</th><th>alert</th><th>integration</th>"
            f"<th>events</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return (f'<section class="panel" id="dead-letters"><h2>Dead-lettered notifications</h2>'
            f"{body}</section>")  # fmt: skip
