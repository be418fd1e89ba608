"""The refresh-token/lifetime rule (`classify`) and the status each verdict gives."""

from __future__ import annotations

import pytest

from tokenlife.core.policy import (
    REFRESH_OVERDUE,
    SECONDS_PER_DAY,
    Status,
    Verdict,
    classify,
    effective_status,
    status_for,
)
from tokenlife.core.tokens import TokenSet

NOW = 1_700_000_000.0
DAY = SECONDS_PER_DAY


def token_set(refresh_token: bool, lifetime: int | None) -> TokenSet:
    return TokenSet(
        access_token="access",
        token_type="Bearer",
        refresh_token="refresh" if refresh_token else None,
        expires_at=None if lifetime is None else NOW + lifetime,
        lifetime_seconds=lifetime,
        lifetime_source=None if lifetime is None else "expires_in",
        granted_scopes=None,
    )


@pytest.mark.parametrize(
    ("refresh_token", "lifetime", "minimum_days", "expected"),
    [
        pytest.param(True, 3600, 30, Verdict.REFRESHABLE, id="refresh-short-lifetime"),
        pytest.param(True, None, 30, Verdict.REFRESHABLE, id="refresh-unknown-lifetime"),
        pytest.param(True, 0, 30, Verdict.REFRESHABLE, id="refresh-expired-access"),
        pytest.param(True, 90 * DAY, 30, Verdict.REFRESHABLE, id="refresh-long-lifetime"),
        pytest.param(False, 30 * DAY, 30, Verdict.LONG_LIVED, id="exactly-30-days"),
        pytest.param(False, 30 * DAY - 1, 30, Verdict.REFRESH_TOKEN_MISSING, id="30-days-minus-1s"),
        pytest.param(False, 30 * DAY + 1, 30, Verdict.LONG_LIVED, id="30-days-plus-1s"),
        pytest.param(False, 29 * DAY, 7, Verdict.LONG_LIVED, id="29-days-threshold-7"),
        pytest.param(False, 7 * DAY - 1, 7, Verdict.REFRESH_TOKEN_MISSING, id="7-days-minus-1s"),
        pytest.param(False, 3600, 30, Verdict.REFRESH_TOKEN_MISSING, id="one-hour"),
        pytest.param(False, 0, 30, Verdict.REFRESH_TOKEN_MISSING, id="expired-jwt"),
        pytest.param(False, None, 30, Verdict.LIFETIME_UNKNOWN, id="unknown-lifetime"),
        pytest.param(False, None, 0.001, Verdict.LIFETIME_UNKNOWN, id="unknown-tiny-threshold"),
        pytest.param(False, DAY // 2, 0.5, Verdict.LONG_LIVED, id="half-day-exactly"),
        pytest.param(False, DAY // 2 - 1, 0.5, Verdict.REFRESH_TOKEN_MISSING, id="half-day-minus"),
        pytest.param(False, 3600, 1 / 24, Verdict.LONG_LIVED, id="one-hour-threshold-1/24"),
        pytest.param(False, 36 * 3600, 1.5, Verdict.LONG_LIVED, id="36-hours-threshold-1.5"),
        pytest.param(False, 36 * 3600 - 1, 1.5, Verdict.REFRESH_TOKEN_MISSING, id="36h-minus-1s"),
        pytest.param(False, 3650 * DAY, 3650, Verdict.LONG_LIVED, id="ten-years-max-threshold"),
    ],
)
def test_classify(
    refresh_token: bool, lifetime: int | None, minimum_days: float, expected: Verdict
) -> None:
    assert classify(token_set(refresh_token, lifetime), minimum_days) is expected


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        pytest.param(Verdict.REFRESHABLE, Status.ACTIVE, id="refreshable"),
        pytest.param(Verdict.LONG_LIVED, Status.ACTIVE, id="long-lived"),
        pytest.param(Verdict.REFRESH_TOKEN_MISSING, Status.DEGRADED, id="refresh-token-missing"),
        # Unknown lifetime may never expire (GitHub OAuth apps): warn, don't degrade.
        pytest.param(Verdict.LIFETIME_UNKNOWN, Status.ACTIVE, id="lifetime-unknown"),
    ],
)
def test_status_for(verdict: Verdict, expected: Status) -> None:
    assert status_for(verdict) is expected


def test_every_verdict_has_a_status() -> None:
    assert {status_for(v) for v in Verdict} <= set(Status)
    assert Status.REAUTHORIZATION_REQUIRED not in {status_for(v) for v in Verdict}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Verdict.REFRESHABLE, "refreshable"),
        (Verdict.LONG_LIVED, "long_lived"),
        (Verdict.REFRESH_TOKEN_MISSING, "refresh_token_missing"),
        (Verdict.LIFETIME_UNKNOWN, "lifetime_unknown"),
        (Status.ACTIVE, "active"),
        (Status.DEGRADED, "degraded"),
        (Status.REAUTHORIZATION_REQUIRED, "reauthorization_required"),
    ],
)
def test_wire_values(value: Verdict | Status, expected: str) -> None:
    # These strings are the `verdict` and `status` fields of events (docs/events.md).
    assert value == expected


A, D, R = Status.ACTIVE, Status.DEGRADED, Status.REAUTHORIZATION_REQUIRED


@pytest.mark.parametrize(
    ("status", "reason", "has_refresh_token", "expires_in", "expected"),
    [
        pytest.param(A, None, True, 1.0, (A, None), id="active-still-valid"),
        pytest.param(A, None, True, 0.0, (D, REFRESH_OVERDUE), id="active-lapsing-now"),
        pytest.param(A, None, True, -600.0, (D, REFRESH_OVERDUE), id="active-lapsed"),
        pytest.param(A, None, False, -600.0, (A, None), id="no-refresh-token-nothing-overdue"),
        pytest.param(A, None, True, None, (A, None), id="no-expiry-known"),
        pytest.param(D, "refresh_failing", True, -600.0, (D, "refresh_failing"), id="failing-kept"),
        pytest.param(
            D, "refresh_token_may_be_lost", True, -1.0, (D, "refresh_token_may_be_lost"),
            id="may-be-lost-kept",
        ),
        pytest.param(R, None, True, -600.0, (R, None), id="reauthorization-kept"),
        pytest.param(D, None, False, 600.0, (D, None), id="verdict-degraded-kept"),
    ],
)  # fmt: skip
def test_effective_status_shows_a_lapsed_active_connection_as_degraded(
    status: Status,
    reason: str | None,
    has_refresh_token: bool,
    expires_in: float | None,
    expected: tuple[Status, str | None],
) -> None:
    expires_at = None if expires_in is None else NOW + expires_in
    got = effective_status(
        status, reason, has_refresh_token=has_refresh_token, expires_at=expires_at, now=NOW
    )
    assert got == expected
