"""The alert a connection shows: the most severe open problem with its fixes; a lesser alert
never hides it, and what resolves the problem clears it."""

from __future__ import annotations

from typing import Any

import pytest

from tokenlife.core import events
from tokenlife.core.connection_alert import shown_after, shown_after_all, standing, summary
from tokenlife.core.events import Event

AT = "2026-11-30T12:00:00Z"
LATER = "2026-11-30T12:00:01Z"
MISSING = {"type": events.REFRESH_TOKEN_MISSING, "occurred_at": AT,
           "fixes": ['Use provider "google"', "Send access_type=offline"]}  # fmt: skip
EXPIRING = {"type": events.ACCESS_TOKEN_EXPIRING, "occurred_at": AT, "fixes": []}
FAILING = {"type": events.REFRESH_FAILING, "occurred_at": AT, "fixes": []}
UNKNOWN = {"type": events.LIFETIME_UNKNOWN, "occurred_at": AT, "fixes": []}
AGAIN = "Ask the user to connect again."
REAUTH = {"type": events.REAUTHORIZATION_REQUIRED, "occurred_at": AT, "fixes": [AGAIN]}


def event(kind: str, *fixes: str) -> Event:
    diagnosis = [{"cause": "c", "fix": fix, "evidence": "e", "source": None} for fix in fixes]
    data: dict[str, Any] = {"occurred_at": LATER, "integration": "crm", "connection_id": "u"}
    if kind.startswith("alert."):
        data["diagnosis"] = diagnosis
    return Event(kind, data)


def shown(kind: str, *fixes: str) -> dict[str, Any]:
    return {"type": kind, "occurred_at": LATER, "fixes": list(fixes)}


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        # The case: half a second after the connect, the expiry warning (no fixes)
        # must not hide why the connection will lapse.
        pytest.param(MISSING, event(events.ACCESS_TOKEN_EXPIRING), MISSING,
                     id="expiring-without-fixes-keeps-missing"),
        pytest.param(EXPIRING, event(events.REFRESH_TOKEN_MISSING, "fix it"),
                     shown(events.REFRESH_TOKEN_MISSING, "fix it"),
                     id="same-severity-with-fixes-replaces-one-without"),
        pytest.param(MISSING, event(events.LIFETIME_UNKNOWN), MISSING, id="info-keeps-warning"),
        pytest.param(None, event(events.ACCESS_TOKEN_EXPIRING),
                     shown(events.ACCESS_TOKEN_EXPIRING), id="first-alert-is-shown"),
        pytest.param(UNKNOWN, event(events.ACCESS_TOKEN_EXPIRING),
                     shown(events.ACCESS_TOKEN_EXPIRING), id="graver-replaces-info"),
        pytest.param(MISSING, event(events.REAUTHORIZATION_REQUIRED, AGAIN),
                     shown(events.REAUTHORIZATION_REQUIRED, AGAIN,
                           *MISSING["fixes"]),
                     id="a-lapse-keeps-the-cause-fixes-after-its-own"),
        pytest.param(FAILING, event(events.REAUTHORIZATION_REQUIRED, AGAIN),
                     shown(events.REAUTHORIZATION_REQUIRED, AGAIN),
                     id="critical-with-fixes-replaces-critical-without"),
        pytest.param(REAUTH, event(events.REFRESH_FAILING), REAUTH,
                     id="critical-without-fixes-keeps-critical-with"),
        pytest.param(FAILING, event(events.REFRESH_FAILING), shown(events.REFRESH_FAILING),
                     id="same-alert-again-is-newer-news"),
        pytest.param(MISSING, event(events.REFRESH_TOKEN_MISSING, "other"),
                     shown(events.REFRESH_TOKEN_MISSING, "other"),
                     id="same-type-replaces-without-merging"),
        # What resolves a problem.
        pytest.param(FAILING, event(events.TOKEN_REFRESHED), None, id="refresh-ends-failing"),
        pytest.param(MISSING, event(events.TOKEN_REFRESHED), None, id="refresh-ends-anything"),
        pytest.param(FAILING, event(events.CONNECTION_RECOVERED), None, id="recovered"),
        pytest.param(MISSING, event(events.CONNECTION_RECOVERED), MISSING,
                     id="recovered-leaves-what-it-does-not-resolve"),
        pytest.param(REAUTH, event(events.CONNECTION_AUTHORIZED), None, id="reconnect"),
        pytest.param(MISSING, event(events.CONNECTION_DELETED), MISSING, id="unrelated-event"),
        pytest.param(None, event(events.TOKEN_REFRESHED), None, id="nothing-to-resolve"),
        pytest.param({}, event(events.ACCESS_TOKEN_EXPIRING), shown(events.ACCESS_TOKEN_EXPIRING),
                     id="an-empty-record-value-counts-as-none"),
    ],
)  # fmt: skip
def test_shown_after(
    stored: dict[str, Any] | None, incoming: Event, expected: dict[str, Any] | None
) -> None:
    assert shown_after(stored, incoming) == expected


def test_a_connect_shows_its_gravest_alert_whatever_the_order() -> None:
    authorized = event(events.CONNECTION_AUTHORIZED)
    missing = event(events.REFRESH_TOKEN_MISSING, "fix")
    unknown = event(events.LIFETIME_UNKNOWN)
    for order in ([authorized, missing, unknown], [authorized, unknown, missing]):
        assert shown_after_all(None, order) == shown(events.REFRESH_TOKEN_MISSING, "fix")
    assert shown_after_all(None, [authorized]) is None


def test_standing_orders_severity_then_fixes() -> None:
    ranked = sorted([MISSING, EXPIRING, REAUTH, FAILING, UNKNOWN], key=standing)
    assert [a["type"] for a in ranked] == [
        events.LIFETIME_UNKNOWN,
        events.ACCESS_TOKEN_EXPIRING,
        events.REFRESH_TOKEN_MISSING,
        events.REFRESH_FAILING,
        events.REAUTHORIZATION_REQUIRED,
    ]


def test_only_alerts_have_a_summary_and_it_keeps_only_the_fixes() -> None:
    assert summary(event(events.TOKEN_REFRESHED)) is None
    assert summary(event(events.REFRESH_TOKEN_MISSING, "a", "b")) == shown(
        events.REFRESH_TOKEN_MISSING, "a", "b"
    )
