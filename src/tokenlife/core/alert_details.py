"""What on-call reads under an alert's first line: when the access token expires, since when
refreshes fail and how often they were tried, the last error, and what to do when the event
names no fix itself. Pure: the time to compare with is passed in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tokenlife.core import events

# Fix steps for alerts whose event carries no diagnosis (docs/troubleshooting.md says more).
DEFAULT_FIXES = {
    events.REFRESH_FAILING: (
        "Nothing to do while the error is transient: the worker keeps retrying (next "
        "attempt above) and sends connection.recovered when a refresh succeeds. If it "
        "persists, check the provider's status and the workers' network path to its token "
        "endpoint; an invalid_grant ends in alert.reauthorization_required."
    ),
    events.ACCESS_TOKEN_EXPIRING: (
        "Ask the user to connect again before the access token expires; fix the cause of "
        "the missing refresh token first (its alert.refresh_token_missing), or the new "
        "connection lapses the same way."
    ),
    events.PROVIDER_DEGRADED: (
        "Check the provider's status page and the workers' network path to the host above: "
        "the failures are the provider's (or the path's), so there is nothing to change in "
        "tokenlife and nobody needs to connect again. Scheduled refreshes of the host are "
        "held while one probes it; they resume by themselves when a probe gets an answer "
        "(provider.recovered). Apps asking for a token still get a refresh attempt of their "
        "own. To tune when it opens and how it probes: the TOKENLIFE_BREAKER_* settings."
    ),
}


def moment(value: Any, now: float) -> str | None:
    """An event's ISO 8601 time for a person: "14:05 UTC, in 3 h" (the date too when it is
    not today's, UTC), "12:00 UTC, 2 h ago"; None when there is no readable time."""
    seconds = events.parse_iso8601(value)
    if seconds is None:
        return None
    when = datetime.fromtimestamp(seconds, UTC)
    today = datetime.fromtimestamp(now, UTC).date()
    clock = when.strftime("%H:%M UTC" if when.date() == today else "%Y-%m-%d %H:%M UTC")
    return f"{clock}, {relative(when.timestamp() - now)}"


def relative(seconds: float) -> str:
    """ "in 3 h" ahead, "3 h ago" behind: minutes below 90 min, hours below 48 h, else days."""
    size = abs(seconds)
    if size < 60:
        return "in under a minute" if seconds >= 0 else "under a minute ago"
    if size < 90 * 60:
        amount = f"{round(size / 60)} min"
    elif size < 48 * 3600:
        amount = f"{round(size / 3600)} h"
    else:
        amount = f"{round(size / 86400)} days"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def detail_lines(data: Mapping[str, Any], now: float) -> list[str]:
    """The times, attempts and error an event carries, one line each, in the order on-call
    asks: how long is left, how long has it been failing, how often, with what."""
    lines = []
    # expires_at on exchange and expiry alerts, access_token_expired_at on refresh_failing.
    expiry = moment(data.get("expires_at") or data.get("access_token_expired_at"), now)
    if expiry is not None:
        verb = "expired" if expiry.endswith(" ago") else "expires"
        lines.append(f"Access token {verb} at {expiry}")
    since = moment(data.get("failing_since"), now)
    if since is not None:
        lines.append(f"Failing since: {since}")
    if data.get("failed_attempts") is not None:
        lines.append(f"Attempts: {data['failed_attempts']}")
    if data.get("error"):
        described = data.get("error_description")
        lines.append(f"Last error: {data['error']}" + (f" ({described})" if described else ""))
    upcoming = moment(data.get("next_attempt_at"), now)
    if upcoming is not None:
        lines.append(f"Next attempt: {upcoming}")
    return lines + _provider_lines(data, now)


def _provider_lines(data: Mapping[str, Any], now: float) -> list[str]:
    """alert.provider_degraded's: the host, how its refreshes failed, and the connections
    whose access token has lapsed or lapses while their refreshes are held."""
    lines = []
    if data.get("host"):
        lines.append(f"Provider host: {data['host']}")
    kinds = data.get("failure_kinds")
    if isinstance(kinds, Mapping) and kinds:
        ranked = sorted(kinds.items(), key=lambda kv: (-_count(kv[1]), str(kv[0])))
        lines.append("Failures: " + ", ".join(f"{kind} x{n}" for kind, n in ranked))
    if data.get("failures") is not None and data.get("outcomes") is not None:
        window = data.get("window_seconds")
        over = f" in the last {window:g} s" if isinstance(window, int | float) else ""
        lines.append(f"Failed: about {data['failures']} of {data['outcomes']} scheduled "
                     f"refreshes{over}")  # fmt: skip
    if isinstance(data.get("probe_every_seconds"), int | float):
        lines.append(f"Probing: one scheduled refresh every {data['probe_every_seconds']:g} s")
    risk = data.get("connections_at_risk")
    if isinstance(risk, Mapping):
        least = "at least " if risk.get("at_least") else ""
        counts = [f"{least}{_count(risk.get('lapsed'))} lapsed"]
        counts += [f"{least}{_count(risk.get(f'within_{h}h'))} within {h} h" for h in (1, 24)]
        lines.append("Connections at risk: " + ", ".join(counts))
        soonest = [
            f"{item.get('connection_id')} ({moment(item.get('lapses_at'), now) or '-'})"
            for item in risk.get("soonest") or []
            if isinstance(item, Mapping)
        ]
        if soonest:
            lines.append("Soonest to lapse: " + ", ".join(soonest))
    return lines


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def fix_steps(alert_type: str, data: Mapping[str, Any]) -> list[str]:
    """The diagnosis' fixes in its order, the event's own fix, else the type's default."""
    fixes = [str(c["fix"]) for c in data.get("diagnosis") or [] if c.get("fix")]
    if data.get("fix"):
        fixes.append(str(data["fix"]))
    if not fixes and alert_type in DEFAULT_FIXES:
        fixes.append(DEFAULT_FIXES[alert_type])
    return fixes
