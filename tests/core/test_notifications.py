"""Alerts as pure rules: severity, routing, dedup keys, grouping, wording, signatures."""

from __future__ import annotations

import pytest

from tokenlife.core.notifications import (
    Alert,
    Notification,
    Route,
    group,
    render,
    section,
    sign,
    targets_for,
    verify,
)


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
    ],
)
def test_the_link_points_at_the_matching_troubleshooting_section(event: Alert, anchor: str) -> None:
    assert section(event) == anchor
    _title, body = render(Notification("ops", "alert", event.type, "crm", (event,)), "D")
    assert body.endswith(f"More: D#{anchor}")


def test_a_resolved_notification_says_so() -> None:
    event = alert("alert.refresh_failing")
    title, _body = render(Notification("ops", "resolved", event.type, "crm", (event,)), "D")
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
