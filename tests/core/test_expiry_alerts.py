"""Expiry alerts without a refresh token: which lead is due, what it covers, when next."""

from __future__ import annotations

import pytest

from tokenlife.core.expiry_alerts import due_lead, leads_covered, next_check_at
from tokenlife.core.policy import SECONDS_PER_DAY

NOW = 1_700_000_000.0
DAY = float(SECONDS_PER_DAY)
HOUR = 3600.0
WEEK = 7 * DAY
EXPIRES = NOW + 30 * DAY  # a 30-day token issued at NOW
LEADS = (WEEK, DAY)  # the settings' default, longest first


@pytest.mark.parametrize(
    ("now", "leads", "sent", "expected"),
    [
        pytest.param(NOW, LEADS, (), None, id="at-issue"),
        pytest.param(EXPIRES - WEEK - 1, LEADS, (), None, id="just-before-7d"),
        pytest.param(EXPIRES - WEEK, LEADS, (), WEEK, id="at-7d"),
        pytest.param(EXPIRES - 6 * DAY, LEADS, (), WEEK, id="6d-left-unsent"),
        pytest.param(EXPIRES - 6 * DAY, LEADS, (WEEK,), None, id="6d-left-7d-sent"),
        # Arriving with 3 days left: only the 7-day mark has been reached.
        pytest.param(EXPIRES - 3 * DAY, LEADS, (), WEEK, id="3d-left"),
        pytest.param(EXPIRES - 3 * DAY, LEADS, (WEEK,), None, id="3d-left-7d-sent"),
        pytest.param(EXPIRES - DAY - 1, LEADS, (WEEK,), None, id="just-before-1d"),
        pytest.param(EXPIRES - DAY, LEADS, (WEEK,), DAY, id="at-1d"),
        # Both marks reached: the shortest one speaks for both.
        pytest.param(EXPIRES - 12 * HOUR, LEADS, (), DAY, id="12h-left-unsent"),
        pytest.param(EXPIRES - 12 * HOUR, LEADS, (WEEK,), DAY, id="12h-left-7d-sent"),
        pytest.param(EXPIRES - 12 * HOUR, LEADS, (WEEK, DAY), None, id="12h-left-all-sent"),
        pytest.param(EXPIRES - 1, LEADS, (), DAY, id="1s-left"),
        pytest.param(EXPIRES - 12 * HOUR, (DAY, WEEK), (), DAY, id="leads-in-any-order"),
        pytest.param(EXPIRES - 12 * HOUR, (14 * DAY, WEEK, DAY), (14 * DAY,), DAY, id="three"),
        # At or after expiry nothing is an expiry *warning* any more.
        pytest.param(EXPIRES, LEADS, (), None, id="at-expiry"),
        pytest.param(EXPIRES + 1, LEADS, (), None, id="after-expiry"),
        pytest.param(EXPIRES - 12 * HOUR, (), (), None, id="no-leads"),
    ],
)
def test_due_lead(
    now: float, leads: tuple[float, ...], sent: tuple[float, ...], expected: float | None
) -> None:
    assert due_lead(expires_at=EXPIRES, lead_times=leads, sent=sent, now=now) == expected


@pytest.mark.parametrize(
    ("lead", "leads", "expected"),
    [
        pytest.param(DAY, LEADS, {WEEK, DAY}, id="1d-covers-7d"),
        pytest.param(WEEK, LEADS, {WEEK}, id="7d-covers-itself"),
        pytest.param(WEEK, (14 * DAY, WEEK, DAY), {14 * DAY, WEEK}, id="7d-of-three"),
        pytest.param(DAY, (DAY, WEEK), {WEEK, DAY}, id="any-order"),
        pytest.param(DAY, (DAY,), {DAY}, id="single"),
    ],
)
def test_leads_covered(lead: float, leads: tuple[float, ...], expected: set[float]) -> None:
    assert leads_covered(lead, leads) == expected


@pytest.mark.parametrize(
    ("now", "leads", "sent", "expected"),
    [
        pytest.param(NOW, LEADS, (), EXPIRES - WEEK, id="at-issue"),
        pytest.param(EXPIRES - WEEK - 1, LEADS, (), EXPIRES - WEEK, id="just-before-7d"),
        pytest.param(EXPIRES - WEEK, LEADS, (WEEK,), EXPIRES - DAY, id="7d-sent"),
        # A lead reached but not alerted yet (a token that arrives late): check at once.
        pytest.param(EXPIRES - WEEK, LEADS, (), EXPIRES - WEEK, id="at-7d-unsent"),
        pytest.param(EXPIRES - 3 * DAY, LEADS, (), EXPIRES - 3 * DAY, id="3d-left-unsent"),
        pytest.param(EXPIRES - 12 * HOUR, LEADS, (), EXPIRES - 12 * HOUR, id="12h-left-unsent"),
        pytest.param(
            EXPIRES - 12 * HOUR, LEADS, (WEEK,), EXPIRES - 12 * HOUR, id="12h-left-1d-unsent"
        ),
        pytest.param(EXPIRES - 3 * DAY, LEADS, (WEEK,), EXPIRES - DAY, id="3d-left-7d-sent"),
        pytest.param(EXPIRES - DAY, LEADS, (WEEK, DAY), EXPIRES, id="1d-sent"),
        pytest.param(EXPIRES - 12 * HOUR, LEADS, (WEEK, DAY), EXPIRES, id="12h-left-all-sent"),
        pytest.param(NOW, LEADS, (WEEK, DAY), EXPIRES, id="all-sent-at-issue"),
        pytest.param(NOW, LEADS, (WEEK,), EXPIRES - DAY, id="7d-sent-at-issue"),
        pytest.param(NOW, (DAY, WEEK), (), EXPIRES - WEEK, id="leads-in-any-order"),
        pytest.param(NOW, (), (), EXPIRES, id="no-leads"),
        pytest.param(EXPIRES, LEADS, (WEEK, DAY), EXPIRES, id="at-expiry"),
        pytest.param(EXPIRES + HOUR, LEADS, (), EXPIRES, id="after-expiry-due-at-once"),
    ],
)
def test_next_check_at(
    now: float, leads: tuple[float, ...], sent: tuple[float, ...], expected: float
) -> None:
    assert next_check_at(expires_at=EXPIRES, lead_times=leads, sent=sent, now=now) == expected


@pytest.mark.parametrize(
    ("now", "sent_before", "alert", "sent_after", "next_at"),
    [
        # One check as the expiry watch runs it: alert, mark covered leads sent, reschedule.
        pytest.param(NOW, set(), None, set(), EXPIRES - WEEK, id="at-issue"),
        pytest.param(EXPIRES - WEEK, set(), WEEK, {WEEK}, EXPIRES - DAY, id="at-7d"),
        pytest.param(EXPIRES - DAY, {WEEK}, DAY, {WEEK, DAY}, EXPIRES, id="at-1d"),
        pytest.param(EXPIRES - 3 * DAY, set(), WEEK, {WEEK}, EXPIRES - DAY, id="3d-left"),
        pytest.param(EXPIRES - 12 * HOUR, set(), DAY, {WEEK, DAY}, EXPIRES, id="12h-left"),
        pytest.param(EXPIRES - 12 * HOUR, {WEEK, DAY}, None, {WEEK, DAY}, EXPIRES, id="all-sent"),
    ],
)
def test_one_expiry_check(
    now: float, sent_before: set[float], alert: float | None, sent_after: set[float], next_at: float
) -> None:
    sent = set(sent_before)
    lead = due_lead(expires_at=EXPIRES, lead_times=LEADS, sent=sent, now=now)
    if lead is not None:
        sent |= leads_covered(lead, LEADS)
    assert lead == alert
    assert sent == sent_after
    assert next_check_at(expires_at=EXPIRES, lead_times=LEADS, sent=sent, now=now) == next_at
