"""Alerts as pure rules: severity, routing, dedup keys, grouping, wording, signatures."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tokenlife.core import events
from tokenlife.core.alert_details import moment, relative
from tokenlife.core.notification_payload import (
    incident_key,
    notification_from,
    notify_type,
    payload,
)
from tokenlife.core.notifications import (
    CLEARS,
    SECTIONS,
    Alert,
    Notification,
    Route,
    folds,
    group,
    render,
    section,
    sign,
    targets_for,
    verify,
)

NOW = datetime(2026, 11, 30, 11, 5, tzinfo=UTC).timestamp()


def alert(type_: str, connection: str | None = "user-1", integration: str = "crm",
          **data: object) -> Alert:  # fmt: skip
    return Alert("1-0", type_, {"event_id": f"e-{connection}-{type_}", "integration": integration,
                                "connection_id": connection, **data})  # fmt: skip


ROUTES = [
    Route(("pager",), types=frozenset({"alert.reauthorization_required"})),
    Route(("crm-team",), integrations=frozenset({"crm"}), severities=frozenset({"warning"})),
]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (alert("alert.reauthorization_required"), ["pager"]),
        (alert("alert.refresh_token_missing"), ["crm-team"]),
        (alert("alert.refresh_token_missing", integration="hr"), ["ops"]),
        (alert("alert.refresh_failing"), ["ops"]),  # critical: the crm route is for warnings
        (alert("alert.configuration", None, severity="error"), ["ops"]),
        (alert("alert.configuration", None, severity="warning"), ["crm-team"]),
    ],
)
def test_routes_pick_targets_and_the_default_catches_the_rest(
    event: Alert, expected: list[str]
) -> None:
    assert targets_for(event, ROUTES, ["ops"]) == expected


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        (alert("alert.reauthorization_required"), "critical"),
        (alert("alert.refresh_failing"), "critical"),
        (alert("alert.refresh_token_missing"), "warning"),
        (alert("alert.access_token_expiring"), "warning"),
        (alert("alert.lifetime_unknown"), "info"),
        (alert("alert.configuration", None, severity="error"), "critical"),
        (alert("alert.provider_degraded", None), "critical"),
    ],
)
def test_severity(event: Alert, severity: str) -> None:
    assert event.severity == severity


def test_dedup_keys_separate_connections_types_and_configuration_codes() -> None:
    keys = {
        alert("alert.refresh_failing").dedup_key(),
        alert("alert.refresh_failing", "user-2").dedup_key(),
        alert("alert.refresh_token_missing").dedup_key(),
        alert("alert.configuration", None, code="a").dedup_key(),
        alert("alert.configuration", None, code="b").dedup_key(),
    }
    assert len(keys) == 5


def test_two_findings_sharing_a_code_keep_apart_and_each_is_a_message() -> None:
    scope = alert(
        "alert.configuration",
        None,
        code="refresh_token_requirement_missing",
        message="lacks scope offline_access",
        fix="Add offline_access to scopes.",
    )
    prompt = alert(
        "alert.configuration",
        None,
        code="refresh_token_requirement_missing",
        message="lacks prompt=consent",
        fix="Set extra_authorization_params.prompt.",
    )
    # The same finding again, its wording carrying another error: the same problem.
    again = alert(
        "alert.configuration",
        None,
        code="refresh_token_requirement_missing",
        message="lacks scope offline_access (2)",
        fix="Add offline_access to scopes.",
    )
    assert scope.dedup_key() != prompt.dedup_key()
    assert scope.dedup_key() == again.dedup_key()
    grouped = group([("ops", "alert", scope), ("ops", "alert", prompt)])
    assert [n.alerts for n in grouped] == [(scope,), (prompt,)]
    titles, bodies = zip(*(render(n, "https://d", NOW) for n in grouped), strict=True)
    assert set(titles) == {"[tokenlife] crm: configuration problem "
                           "(refresh_token_requirement_missing)"}  # fmt: skip
    assert "1. Add offline_access to scopes." in bodies[0]
    assert "1. Set extra_authorization_params.prompt." in bodies[1]


def test_a_storm_groups_by_target_type_and_integration() -> None:
    storm = [alert("alert.refresh_failing", f"user-{n}") for n in range(1000)]
    items = [(t, "alert", a) for a in storm for t in ("ops", "pager")]
    items.append(("ops", "alert", alert("alert.refresh_failing", "user-x", integration="hr")))
    grouped = group(items)
    assert sorted((n.target, n.integration, len(n.alerts)) for n in grouped) == [
        ("ops", "crm", 1000), ("ops", "hr", 1), ("pager", "crm", 1000),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("event", "anchor"),
    [
        (alert("alert.refresh_token_missing", provider="google"), "google"),
        (alert("alert.refresh_token_missing", provider="microsoft"), "microsoft"),
        (alert("alert.refresh_token_missing", provider="custom"), "custom-providers"),
        (alert("alert.refresh_token_missing", provider="okta"), "other-openid-connect-providers"),
        (alert("alert.reauthorization_required"), "re-authorization-required"),
        (alert("alert.refresh_failing"), "refreshes-keep-failing"),
        (alert("alert.provider_degraded", None), "provider-degraded"),
    ],
)
def test_the_link_points_at_the_matching_troubleshooting_section(event: Alert, anchor: str) -> None:
    assert section(event) == anchor
    notification = Notification("ops", "alert", event.type, "crm", (event,))
    _title, body = render(notification, "https://docs.example.com/t", NOW)
    assert body.endswith(f"More: https://docs.example.com/t#{anchor}")
    _title, body = render(notification, "", NOW)  # no docs site set: named, never linked
    assert body.endswith(f"More: section #{anchor} of docs/troubleshooting.md "
                         "(set TOKENLIFE_DOCS_URL to link it)")  # fmt: skip


def test_a_resolved_notification_says_so() -> None:
    event = alert("alert.refresh_failing")
    title, _body = render(Notification("ops", "resolved", event.type, "crm", (event,)), "D", NOW)
    assert title == "[tokenlife] RESOLVED crm: refresh failing (user-1)"


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now", "valid"),
    [
        (b"s", 1000, b"{}", 1000, True),
        (b"s", 1000, b"{}", 1299, True),
        (b"s", 1000, b"{}", 1301, False),  # older than five minutes: a replay
        (b"s", 1000, b"{}", 699, False),
        (b"other", 1000, b"{}", 1000, False),
    ],
)
def test_signatures(secret: bytes, timestamp: int, body: bytes, now: float, valid: bool) -> None:
    header = sign(b"s", timestamp, b"{}")
    assert verify(secret, header, body, now) is valid


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1000"])
def test_malformed_signatures_do_not_verify(header: str) -> None:
    assert verify(b"s", header, b"{}", 1000) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-30T14:05:00Z", "14:05 UTC, in 3 h"),
        ("2026-11-30T11:50:00Z", "11:50 UTC, in 45 min"),
        ("2026-11-30T11:05:30Z", "11:05 UTC, in under a minute"),
        ("2026-11-30T09:00:00Z", "09:00 UTC, 2 h ago"),
        ("2026-12-01T14:05:00Z", "2026-12-01 14:05 UTC, in 27 h"),
        ("2026-12-07T11:05:00+00:00", "2026-12-07 11:05 UTC, in 7 days"),
        ("2026-11-30T15:05:00+01:00", "14:05 UTC, in 3 h"),
        ("not a time", None),
        (None, None),
    ],
)
def test_times_read_as_clock_and_distance(value: object, expected: str | None) -> None:
    assert moment(value, NOW) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-59, "under a minute ago"), (89 * 60, "in 89 min"), (90 * 60, "in 2 h"),
     (-47 * 3600, "47 h ago"), (48 * 3600, "in 2 days")],
)  # fmt: skip
def test_relative_distances(seconds: float, expected: str) -> None:
    assert relative(seconds) == expected


def test_a_failing_refresh_tells_on_call_when_since_how_often_and_what_next() -> None:
    event = alert("alert.refresh_failing", provider="custom", error="server_error",
                  error_description="HTTP 503", failing_since="2026-11-30T08:05:00Z",
                  failed_attempts=7, access_token_expired_at="2026-11-30T10:05:00Z",
                  next_attempt_at="2026-11-30T11:20:00Z")  # fmt: skip
    _title, body = render(Notification("ops", "alert", event.type, "crm", (event,)), "", NOW)
    assert "\n".join([
        "Connection: user-1",
        "Access token expired at 10:05 UTC, 60 min ago",
        "Failing since: 08:05 UTC, 3 h ago",
        "Attempts: 7",
        "Last error: server_error (HTTP 503)",
        "Next attempt: 11:20 UTC, in 15 min",
    ]) in body  # fmt: skip
    assert "How to fix:\n1. Nothing to do while the error is transient" in body


def test_an_expiring_token_says_when_and_what_to_do() -> None:
    event = alert(
        "alert.access_token_expiring",
        expires_at="2026-11-30T14:05:00Z",
        message="The access token expires soon and there is no refresh token.",
    )
    _title, body = render(Notification("ops", "alert", event.type, "crm", (event,)), "", NOW)
    assert "Access token expires at 14:05 UTC, in 3 h" in body
    assert "1. Ask the user to connect again before the access token expires" in body


@pytest.mark.parametrize(
    ("kind", "event", "expected"),
    [
        ("alert", alert("alert.reauthorization_required"), "failure"),
        ("alert", alert("alert.refresh_failing"), "failure"),
        ("alert", alert("alert.access_token_expiring"), "warning"),
        ("alert", alert("alert.refresh_token_missing"), "warning"),
        ("alert", alert("alert.lifetime_unknown"), "info"),
        ("alert", alert("alert.configuration", None, severity="error"), "failure"),
        ("resolved", alert("alert.refresh_failing"), "success"),
        ("alert", alert("alert.provider_degraded", None), "failure"),
        ("resolved", alert("alert.provider_degraded", None), "success"),
    ],
)
def test_apprise_notify_types_follow_severity(kind: str, event: Alert, expected: str) -> None:
    assert notify_type(kind, event.severity) == expected


@pytest.mark.parametrize(
    ("earlier", "later", "folded"),
    [
        ("2026-11-30T11:00:00Z", "2026-11-30T11:00:01Z", True),  # back to back
        ("2026-11-30T11:00:00Z", "2026-11-30T11:10:00Z", True),
        ("2026-11-30T11:00:00Z", "2026-11-30T11:10:01Z", False),  # a reminder, not a repeat
        ("2026-11-30T11:00:01Z", "2026-11-30T11:00:00Z", False),
        (None, "2026-11-30T11:00:00Z", False),
    ],
)
def test_an_expiry_alert_right_after_a_missing_refresh_token_is_folded(
    earlier: str | None, later: str, folded: bool
) -> None:
    expiring = alert("alert.access_token_expiring", occurred_at=later)
    at = None if earlier is None else datetime.fromisoformat(earlier).timestamp()
    assert folds(expiring, at) is folded


def test_a_resolution_carries_the_incident_key_its_alert_opened() -> None:
    """A grouped alert's connections clear one at a time: the resolution, whichever of them
    it names, closes the incident the alert opened (kept per target by the delivery)."""
    failing = [alert("alert.refresh_failing", f"user-{n}") for n in (1, 2)]
    # What delivery resolves: the recovery event's data under the cleared alert's type.
    last = Alert("2-0", "alert.refresh_failing", {"integration": "crm",
                 "connection_id": "user-2", "failed_attempts": 3})  # fmt: skip
    opened = Notification("pager", "alert", "alert.refresh_failing", "crm", tuple(failing))
    key = incident_key(opened)
    closed = Notification("pager", "resolved", "alert.refresh_failing", "crm", (last,), key)
    assert payload(closed)["incident_key"] == key
    assert notification_from("pager", payload(closed)).incident == key
    alone = Notification("pager", "alert", "alert.refresh_failing", "crm", (last,))
    assert incident_key(alone) != key  # user-2 failing alone later is an incident of its own


def degraded(**changes: object) -> Alert:
    """alert.provider_degraded as provider_health emits it (core/provider_breaker.py)."""
    soonest = [{"connection_id": "user-7", "lapses_at": "2026-11-30T10:05:00Z"},
               {"connection_id": "user-9", "lapses_at": "2026-11-30T11:20:00Z"}]  # fmt: skip
    risk = {"lapsed": 3, "within_1h": 12, "within_24h": 40, "soonest": soonest, "at_least": False}
    data: dict[str, object] = {
        "provider": "microsoft", "host": "login.microsoftonline.com",
        "message": "Refreshes at login.microsoftonline.com keep failing.",
        "failure_kinds": {"timeout": 3, "http_503": 40}, "failures": 43, "outcomes": 50,
        "window_seconds": 60.0, "probe_every_seconds": 30.0, "connections_at_risk": risk,
    }  # fmt: skip
    head = {"event_id": "e-degraded", "integration": "crm", "connection_id": None}
    return Alert("1-0", events.PROVIDER_DEGRADED, {**head, **data, **changes})


def test_a_degraded_provider_names_the_host_the_failures_and_the_connections_at_risk() -> None:
    event = degraded()
    title, body = render(Notification("ops", "alert", event.type, "crm", (event,)), "", NOW)
    assert title == "[tokenlife] crm: provider degraded (all connections)"
    assert "\n".join([
        "Integration: crm (provider microsoft)",
        "Provider host: login.microsoftonline.com",
        "Failures: http_503 x40, timeout x3",  # the most frequent first
        "Failed: about 43 of 50 scheduled refreshes in the last 60 s",
        "Probing: one scheduled refresh every 30 s",
        "Connections at risk: 3 lapsed, 12 within 1 h, 40 within 24 h",
        "Soonest to lapse: user-7 (10:05 UTC, 60 min ago), user-9 (11:20 UTC, in 15 min)",
    ]) in body  # fmt: skip
    assert "Connection:" not in body
    assert "How to fix:\n1. Check the provider's status page" in body
    assert "TOKENLIFE_BREAKER_" in body
    assert body.endswith("More: section #provider-degraded of docs/troubleshooting.md "
                         "(set TOKENLIFE_DOCS_URL to link it)")  # fmt: skip


def test_counts_that_stopped_at_the_read_limit_say_at_least() -> None:
    risk = {"lapsed": 100_000, "within_1h": 0, "within_24h": 0, "soonest": [], "at_least": True}
    event = degraded(connections_at_risk=risk)
    _title, body = render(Notification("ops", "alert", event.type, "crm", (event,)), "", NOW)
    assert ("Connections at risk: at least 100000 lapsed, at least 0 within 1 h, "
            "at least 0 within 24 h") in body  # fmt: skip
    assert "Soonest to lapse" not in body


def test_provider_recovered_resolves_the_integrations_provider_alert() -> None:
    assert CLEARS[events.PROVIDER_RECOVERED] == (events.PROVIDER_DEGRADED,)
    recovered = alert(events.PROVIDER_RECOVERED, None, provider="microsoft",
                      host="login.microsoftonline.com", probes_failed=4,
                      held_refreshes_resumed=120)  # fmt: skip
    # One dedup key per integration, the one the resolving event looks for...
    assert recovered.dedup_key(events.PROVIDER_DEGRADED) == degraded().dedup_key()
    # ...and not another integration's on the same host.
    other = alert(events.PROVIDER_DEGRADED, None, integration="hr")
    assert recovered.dedup_key(events.PROVIDER_DEGRADED) != other.dedup_key()
    resolved = Alert(recovered.entry_id, events.PROVIDER_DEGRADED, recovered.data)
    notification = Notification("ops", "resolved", resolved.type, "crm", (resolved,))
    title, body = render(notification, "", NOW)
    assert title == "[tokenlife] RESOLVED crm: provider degraded (all connections)"
    assert body == "The condition cleared for all connections of crm."


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_linked_section_is_a_heading_of_the_troubleshooting_guide() -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
    anchors = {_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", guide.read_text(), re.M)}
    assert set(SECTIONS.values()) - anchors == set()
