"""Refresh timing: the margin ahead of expiry, keep-alives, on-demand leeway, retry windows."""

from __future__ import annotations

import pytest

from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.refresh_timing import (
    FailureWindow,
    RefreshTiming,
    RetryPolicy,
    after_transient_failure,
    may_have_rotated,
    needs_refresh,
    next_refresh_at,
    refresh_failing_alert_due,
    unknown_outcome_retry_within,
)

NOW = 1_700_000_000.0
DAY = float(SECONDS_PER_DAY)
HOUR = 3600.0
HIGH = 0.999  # the largest jitter the tables use; random.random() stays below 1

DEFAULT = RefreshTiming()  # 300 s minimum, 20 % of the lifetime, up to 10 % jitter
IDLE_90 = RefreshTiming(refresh_token_idle_seconds=90 * DAY, unknown_lifetime_refresh_seconds=None)
NO_PERIODIC = RefreshTiming(unknown_lifetime_refresh_seconds=None)


@pytest.mark.parametrize(
    ("expires_at", "lifetime", "last_refreshed_at", "timing", "jitter", "now", "expected"),
    [
        # The margin is max(300 s, 20 % of the lifetime), widened by up to 10 % jitter.
        pytest.param(NOW + 3600, 3600, NOW, DEFAULT, 0.0, NOW, NOW + 3600 - 720, id="1h-fraction"),
        pytest.param(
            NOW + 3600, 3600, NOW, DEFAULT, HIGH, NOW, NOW + 3600 - 720 * 1.0999, id="1h-jitter"
        ),
        pytest.param(
            NOW + 3600, 3600, NOW, DEFAULT, 0.5, NOW, NOW + 3600 - 720 * 1.05, id="1h-mid-jitter"
        ),
        pytest.param(
            NOW + DAY, int(DAY), NOW, DEFAULT, 0.0, NOW, NOW + DAY - 0.2 * DAY, id="1d-fraction"
        ),
        pytest.param(
            NOW + 1200, 1200, NOW, DEFAULT, 0.0, NOW, NOW + 1200 - 300, id="20min-minimum"
        ),
        pytest.param(
            NOW + 1200, 1200, NOW, DEFAULT, HIGH, NOW, NOW + 1200 - 300 * 1.0999, id="20min-jitter"
        ),
        # 600 s: the 300 s minimum is already half the lifetime, so jitter can't widen it:
        # it narrows it instead (tokens issued together still spread out).
        pytest.param(NOW + 600, 600, NOW, DEFAULT, 0.0, NOW, NOW + 300, id="10min-minimum"),
        pytest.param(
            NOW + 600,
            600,
            NOW,
            DEFAULT,
            HIGH,
            NOW,
            NOW + 600 - 300 * (1 - 0.0999),
            id="10min-jitter-narrows",
        ),
        # 300 s: the 300 s minimum would make it due on arrival; half the lifetime caps it.
        pytest.param(NOW + 300, 300, NOW, DEFAULT, 0.0, NOW, NOW + 150, id="5min-half"),
        pytest.param(
            NOW + 300,
            300,
            NOW,
            DEFAULT,
            HIGH,
            NOW,
            NOW + 300 - 150 * (1 - 0.0999),
            id="5min-half-jitter-narrows",
        ),
        pytest.param(NOW + 60, 60, NOW, DEFAULT, 0.0, NOW, NOW + 30, id="1min-half"),
        pytest.param(
            NOW + 3600,
            3600,
            NOW,
            RefreshTiming(min_margin_seconds=1200),
            0.0,
            NOW,
            NOW + 2400,
            id="larger-minimum-wins",
        ),
        pytest.param(
            NOW + 3600,
            3600,
            NOW,
            RefreshTiming(jitter_fraction=0.5),
            0.5,
            NOW,
            NOW + 3600 - 720 * 1.25,
            id="wider-jitter-fraction",
        ),
        pytest.param(
            NOW + 3600,
            3600,
            NOW,
            RefreshTiming(jitter_fraction=0.0),
            HIGH,
            NOW,
            NOW + 2880,
            id="no-jitter-fraction",
        ),
        # Never before now: a late schedule (worker down) is due at once.
        pytest.param(NOW + 600, 3600, NOW - 3000, DEFAULT, 0.0, NOW, NOW, id="late-due-now"),
        pytest.param(NOW - 10, 3600, NOW - 3610, DEFAULT, 0.0, NOW, NOW, id="expired-due-now"),
        # Unknown lifetime: what is left of it now stands in.
        pytest.param(NOW + 3600, None, NOW, DEFAULT, 0.0, NOW, NOW + 2880, id="no-lifetime-1h"),
        pytest.param(
            NOW + 3600, None, NOW, DEFAULT, 0.0, NOW + 1800, NOW + 3600 - 360, id="no-lifetime-half"
        ),
        pytest.param(NOW + 400, None, NOW, DEFAULT, 0.0, NOW, NOW + 200, id="no-lifetime-half-cap"),
        pytest.param(NOW - 5, None, NOW, DEFAULT, 0.0, NOW, NOW, id="no-lifetime-expired"),
        pytest.param(NOW + 3600, 0, NOW, DEFAULT, 0.0, NOW, NOW + 2880, id="zero-lifetime-unknown"),
        # Keep-alive: half the idle limit after the last refresh, if that comes first.
        pytest.param(
            NOW + 100 * DAY, int(100 * DAY), NOW, IDLE_90, 0.0, NOW, NOW + 45 * DAY, id="keep-alive"
        ),
        pytest.param(
            NOW + 100 * DAY,
            int(100 * DAY),
            NOW,
            IDLE_90,
            HIGH,
            NOW,
            NOW + 45 * DAY,
            id="keep-alive-no-jitter",
        ),
        pytest.param(
            NOW + 60 * DAY,
            int(60 * DAY),
            NOW,
            IDLE_90,
            0.0,
            NOW,
            NOW + 45 * DAY,
            id="keep-alive-before-48d-refresh",
        ),
        pytest.param(
            NOW + 50 * DAY,
            int(50 * DAY),
            NOW,
            IDLE_90,
            0.0,
            NOW,
            NOW + 40 * DAY,
            id="refresh-before-keep-alive",
        ),
        pytest.param(NOW + 3600, 3600, NOW, IDLE_90, 0.0, NOW, NOW + 2880, id="short-token-idle"),
        pytest.param(
            NOW + 100 * DAY,
            int(100 * DAY),
            NOW - 40 * DAY,
            IDLE_90,
            0.0,
            NOW,
            NOW + 5 * DAY,
            id="keep-alive-from-last-refresh",
        ),
        pytest.param(
            NOW + 100 * DAY,
            int(100 * DAY),
            NOW - 60 * DAY,
            IDLE_90,
            0.0,
            NOW,
            NOW,
            id="keep-alive-overdue",
        ),
        pytest.param(None, None, NOW, IDLE_90, 0.0, NOW, NOW + 45 * DAY, id="no-expiry-keep-alive"),
        pytest.param(
            None, None, NOW - 10 * DAY, IDLE_90, HIGH, NOW, NOW + 35 * DAY, id="no-expiry-since-10d"
        ),
        pytest.param(None, None, NOW - 50 * DAY, IDLE_90, 0.0, NOW, NOW, id="no-expiry-overdue"),
        pytest.param(None, 3600, NOW, NO_PERIODIC, 0.0, NOW, None, id="no-expiry-no-idle"),
        pytest.param(None, None, NOW, NO_PERIODIC, HIGH, NOW, None, id="nothing-to-schedule"),
        # Unknown lifetime (no expires_in, no JWT exp: Salesforce): refreshed hourly.
        pytest.param(None, None, NOW, DEFAULT, 0.0, NOW, NOW + 3600, id="unknown-lifetime-hourly"),
        pytest.param(
            None,
            None,
            NOW - 600,
            DEFAULT,
            0.0,
            NOW,
            NOW + 3000,
            id="unknown-lifetime-from-last-refresh",
        ),
        pytest.param(
            None,
            None,
            NOW,
            RefreshTiming(refresh_token_idle_seconds=90 * DAY),
            0.0,
            NOW,
            NOW + 3600,
            id="unknown-lifetime-sooner-than-keep-alive",
        ),
    ],
)
def test_next_refresh_at(
    expires_at: float | None,
    lifetime: int | None,
    last_refreshed_at: float,
    timing: RefreshTiming,
    jitter: float,
    now: float,
    expected: float | None,
) -> None:
    due = next_refresh_at(
        expires_at=expires_at,
        lifetime_seconds=lifetime,
        last_refreshed_at=last_refreshed_at,
        timing=timing,
        jitter=jitter,
        now=now,
    )
    if expected is None:
        assert due is None
    else:
        assert due == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "lifetime", [1, 30, 60, 299, 300, 301, 599, 600, 601, 1499, 1500, 3599, 86400, 8_640_000]
)
@pytest.mark.parametrize("jitter", [0.0, 0.5, HIGH])
def test_margin_bounds(lifetime: int, jitter: float) -> None:
    """At most half the lifetime; jitter widens the margin, or narrows it where widening
    would pass half the lifetime, so short tokens issued together still spread out."""
    due = next_refresh_at(
        expires_at=NOW + lifetime,
        lifetime_seconds=lifetime,
        last_refreshed_at=NOW,
        timing=DEFAULT,
        jitter=jitter,
        now=NOW,
    )
    assert due is not None
    margin = NOW + lifetime - due
    base = max(DEFAULT.min_margin_seconds, DEFAULT.margin_fraction * lifetime)
    assert due > NOW  # never due the moment the token arrives
    assert margin <= lifetime / 2 + 1e-6
    assert margin >= min(base, lifetime / 2) * (1 - DEFAULT.jitter_fraction) - 1e-6
    assert margin <= base * (1 + DEFAULT.jitter_fraction) + 1e-6
    if jitter and base * (1 + DEFAULT.jitter_fraction * jitter) > lifetime / 2:
        assert margin < lifetime / 2  # the capped case still moves with the jitter


@pytest.mark.parametrize(
    ("expires_at", "lifetime", "leeway", "now", "expected"),
    [
        pytest.param(NOW + 3600, 3600, 60.0, NOW, False, id="fresh"),
        pytest.param(NOW + 61, 3600, 60.0, NOW, False, id="61s-left"),
        pytest.param(NOW + 60, 3600, 60.0, NOW, True, id="60s-left"),
        pytest.param(NOW + 59, 3600, 60.0, NOW, True, id="59s-left"),
        pytest.param(NOW - 1, 3600, 60.0, NOW, True, id="expired"),
        # A 60 s token: a 60 s leeway would refresh it on every read; half its life caps it.
        pytest.param(NOW + 31, 60, 60.0, NOW, False, id="60s-token-31s-left"),
        pytest.param(NOW + 30, 60, 60.0, NOW, True, id="60s-token-30s-left"),
        pytest.param(NOW + 60, 60, 60.0, NOW, False, id="60s-token-fresh"),
        pytest.param(NOW + 10, 20, 60.0, NOW, True, id="20s-token-10s-left"),
        pytest.param(NOW + 11, 20, 60.0, NOW, False, id="20s-token-11s-left"),
        # Unknown lifetime: the leeway applies uncapped.
        pytest.param(NOW + 60, None, 60.0, NOW, True, id="unknown-lifetime-60s-left"),
        pytest.param(NOW + 61, None, 60.0, NOW, False, id="unknown-lifetime-61s-left"),
        pytest.param(NOW + 10, None, 0.0, NOW, False, id="no-leeway"),
        pytest.param(NOW, None, 0.0, NOW, True, id="no-leeway-expiring-now"),
        pytest.param(None, 3600, 60.0, NOW, False, id="no-expiry"),
        pytest.param(None, None, 60.0, NOW + 10 * DAY, False, id="no-expiry-ever"),
    ],
)
def test_needs_refresh(
    expires_at: float | None, lifetime: int | None, leeway: float, now: float, expected: bool
) -> None:
    assert (
        needs_refresh(expires_at=expires_at, lifetime_seconds=lifetime, leeway=leeway, now=now)
        is expected
    )


RETRY = RetryPolicy()  # 5 s base, 900 s cap, 10 attempts an hour
THREE = RetryPolicy(max_attempts_per_hour=3)


@pytest.mark.parametrize(
    ("failures", "window", "policy", "retry_after", "jitter", "now", "expected_due", "expected"),
    [
        # Exponential: step = min(900, 5 * 2**(failures - 1)), wait in [step / 2, step).
        pytest.param(
            1, None, RETRY, None, 0.0, NOW, NOW + 2.5, FailureWindow(NOW, 1), id="1st-low"
        ),
        pytest.param(
            1, None, RETRY, None, HIGH, NOW, NOW + 4.9975, FailureWindow(NOW, 1), id="1st-high"
        ),
        pytest.param(
            2,
            FailureWindow(NOW - 5, 1),
            RETRY,
            None,
            0.0,
            NOW,
            NOW + 5,
            FailureWindow(NOW - 5, 2),
            id="2nd",
        ),
        pytest.param(
            4,
            FailureWindow(NOW - 40, 3),
            RETRY,
            None,
            0.5,
            NOW,
            NOW + 30,
            FailureWindow(NOW - 40, 4),
            id="4th-mid",
        ),
        pytest.param(
            8,
            FailureWindow(NOW - 1000, 7),
            RETRY,
            None,
            0.0,
            NOW,
            NOW + 320,
            FailureWindow(NOW - 1000, 8),
            id="8th-below-cap",
        ),
        pytest.param(
            9,
            FailureWindow(NOW - 2000, 3),
            RETRY,
            None,
            0.0,
            NOW,
            NOW + 450,
            FailureWindow(NOW - 2000, 4),
            id="9th-capped-low",
        ),
        pytest.param(
            40,
            FailureWindow(NOW - 100, 2),
            RETRY,
            None,
            HIGH,
            NOW,
            NOW + 899.55,
            FailureWindow(NOW - 100, 3),
            id="40th-capped-high",
        ),
        # consecutive_failures counts 1-based; 0 is treated like the first.
        pytest.param(
            0, None, RETRY, None, 0.0, NOW, NOW + 2.5, FailureWindow(NOW, 1), id="0th-as-1st"
        ),
        pytest.param(
            1,
            None,
            RetryPolicy(base_seconds=60, max_seconds=60),
            None,
            0.0,
            NOW,
            NOW + 30,
            FailureWindow(NOW, 1),
            id="base-equals-cap",
        ),
        # Retry-After is a floor, and not capped.
        pytest.param(
            1, None, RETRY, 120.0, 0.0, NOW, NOW + 120, FailureWindow(NOW, 1), id="retry-after"
        ),
        pytest.param(
            4,
            FailureWindow(NOW - 40, 3),
            RETRY,
            1.0,
            0.0,
            NOW,
            NOW + 20,
            FailureWindow(NOW - 40, 4),
            id="retry-after-below-backoff",
        ),
        pytest.param(
            2,
            FailureWindow(NOW - 5, 1),
            RETRY,
            3600.0,
            0.0,
            NOW,
            NOW + 3600,
            FailureWindow(NOW - 5, 2),
            id="retry-after-above-cap",
        ),
        # A window lasts an hour; the failure after it opens a new one.
        pytest.param(
            5,
            FailureWindow(NOW - 3599, 2),
            RETRY,
            None,
            0.0,
            NOW,
            NOW + 40,
            FailureWindow(NOW - 3599, 3),
            id="window-still-open",
        ),
        pytest.param(
            5,
            FailureWindow(NOW - 3600, 9),
            RETRY,
            None,
            0.0,
            NOW,
            NOW + 40,
            FailureWindow(NOW, 1),
            id="new-window-at-an-hour",
        ),
        pytest.param(
            5,
            FailureWindow(NOW - 5 * HOUR, 50),
            RETRY,
            None,
            0.0,
            NOW,
            NOW + 40,
            FailureWindow(NOW, 1),
            id="new-window-long-after",
        ),
        # At most max_attempts_per_hour failures per window: the last waits for the next one.
        pytest.param(
            2,
            FailureWindow(NOW - 3, 1),
            THREE,
            None,
            0.0,
            NOW,
            NOW + 5,
            FailureWindow(NOW - 3, 2),
            id="cap-2nd-of-3",
        ),
        pytest.param(
            3,
            FailureWindow(NOW - 9, 2),
            THREE,
            None,
            0.0,
            NOW,
            NOW - 9 + HOUR,
            FailureWindow(NOW - 9, 3),
            id="cap-3rd-of-3-waits-for-window",
        ),
        pytest.param(
            3,
            FailureWindow(NOW - 9, 2),
            THREE,
            None,
            HIGH,
            NOW,
            NOW - 9 + HOUR,
            FailureWindow(NOW - 9, 3),
            id="cap-3rd-of-3-high-jitter",
        ),
        pytest.param(
            3,
            FailureWindow(NOW - 9, 2),
            THREE,
            7200.0,
            0.0,
            NOW,
            NOW + 7200,
            FailureWindow(NOW - 9, 3),
            id="cap-retry-after-beyond-window",
        ),
        pytest.param(
            12,
            FailureWindow(NOW - 3000, 2),
            THREE,
            None,
            HIGH,
            NOW,
            NOW + 899.55,
            FailureWindow(NOW - 3000, 3),
            id="cap-backoff-beyond-window",
        ),
        pytest.param(
            4,
            FailureWindow(NOW - 9, 2),
            THREE,
            None,
            0.0,
            NOW + HOUR - 9,
            NOW + HOUR - 9 + 20,
            FailureWindow(NOW + HOUR - 9, 1),
            id="cap-retry-in-next-window",
        ),
        pytest.param(
            6,
            FailureWindow(NOW - 100, 7),
            THREE,
            None,
            0.0,
            NOW,
            NOW - 100 + HOUR,
            FailureWindow(NOW - 100, 8),
            id="cap-count-already-over",
        ),
        pytest.param(
            1,
            None,
            RetryPolicy(max_attempts_per_hour=1),
            None,
            0.0,
            NOW,
            NOW + HOUR,
            FailureWindow(NOW, 1),
            id="cap-1-defers-first",
        ),
    ],
)
def test_after_transient_failure(
    failures: int,
    window: FailureWindow | None,
    policy: RetryPolicy,
    retry_after: float | None,
    jitter: float,
    now: float,
    expected_due: float,
    expected: FailureWindow,
) -> None:
    due, new_window = after_transient_failure(
        consecutive_failures=failures,
        window=window,
        policy=policy,
        retry_after=retry_after,
        jitter=jitter,
        now=now,
    )
    assert due == pytest.approx(expected_due, abs=1e-6)
    assert new_window == expected


def test_hourly_cap_over_a_run_of_failures() -> None:
    """Each retry fails at once: three in the first window, then the next window opens."""
    now = NOW
    window: FailureWindow | None = None
    dues: list[tuple[float, float, int]] = []
    for failures in range(1, 6):
        due, window = after_transient_failure(
            consecutive_failures=failures,
            window=window,
            policy=THREE,
            retry_after=None,
            jitter=0.0,
            now=now,
        )
        dues.append((due - NOW, window.started_at - NOW, window.count))
        now = due
    assert dues == [
        (2.5, 0.0, 1),
        (7.5, 0.0, 2),
        (HOUR, 0.0, 3),
        (HOUR + 20, HOUR, 1),
        (HOUR + 60, HOUR, 2),
    ]


@pytest.mark.parametrize(
    ("failures", "expires_in", "retry_after", "expected_in"),
    [
        (1, 3600.0, None, 2.5),  # the backoff ends long before expiry
        (6, 30.0, None, 30.0),  # 80 s of backoff: the retry comes when the token lapses
        (6, 79.0, None, 79.0),
        (6, 81.0, None, 80.0),  # the backoff is the shorter
        (6, 30.0, 60.0, 60.0),  # capped at expiry, but never before Retry-After
        (9, 30.0, 45.0, 45.0),
        (6, -10.0, None, 80.0),  # lapsed already: the usual backoff (this one set degraded)
        (6, None, None, 80.0),  # no known expiry
    ],
)
def test_a_transient_retry_comes_no_later_than_the_token_lapses(
    failures: int, expires_in: float | None, retry_after: float | None, expected_in: float
) -> None:
    due, _ = after_transient_failure(
        consecutive_failures=failures,
        window=None,
        policy=RetryPolicy(),  # 5 s doubling, equal jitter: 80 s after the 6th failure
        retry_after=retry_after,
        jitter=0.0,
        now=NOW,
        expires_at=None if expires_in is None else NOW + expires_in,
    )
    assert due - NOW == pytest.approx(expected_in, abs=1e-6)


@pytest.mark.parametrize(
    ("rotates", "sent", "expected"),
    [
        ("yes", True, True),
        ("optional", True, True),  # may be switched on in the app's settings
        ("unconfirmed", True, True),  # custom providers: assume the worst
        ("no", True, False),  # Google: the same refresh token works again
        ("yes", False, False),  # never connected: the provider can't have seen it
    ],
)
def test_may_have_rotated(rotates: str, sent: bool, expected: bool) -> None:
    assert may_have_rotated(rotates_refresh_tokens=rotates, request_sent=sent) is expected


@pytest.mark.parametrize(
    ("grace", "expected"),
    [(600, 5.0), (30, 5.0), (6, 3.0), (1, 0.5), (0, 5.0), (None, 5.0)],
)
def test_unknown_outcome_retry_within(grace: int | None, expected: float) -> None:
    assert unknown_outcome_retry_within(grace) == expected


@pytest.mark.parametrize(
    ("failures", "within", "expected"),
    [
        (1, None, NOW + 2.5),  # half of the 5 s base step at jitter 0
        (4, None, NOW + 20.0),
        (4, 5.0, NOW + 5.0),  # an unknown outcome: retried inside the window
        (1, 5.0, NOW + 2.5),  # never later than the backoff would be
    ],
)
def test_after_transient_failure_within(
    failures: int, within: float | None, expected: float
) -> None:
    due, _ = after_transient_failure(
        consecutive_failures=failures, window=None, policy=RetryPolicy(), retry_after=None,
        jitter=0.0, now=NOW, within=within,
    )  # fmt: skip
    assert due == expected


@pytest.mark.parametrize(
    ("lapsed", "unknown", "earlier_unknown", "grace", "expected"),
    [
        pytest.param(True, False, False, None, True, id="lapsed-always"),
        pytest.param(False, False, False, 0, False, id="plain-failure-before-lapse"),
        # Auth0 without an overlap period: the retry itself may burn the family.
        pytest.param(False, True, False, 0, True, id="unknown-no-grace-at-once"),
        pytest.param(False, True, False, 600, False, id="unknown-grace-retry-first"),
        pytest.param(False, True, False, None, False, id="unknown-undocumented-retry-first"),
        pytest.param(False, True, True, 600, True, id="prompt-retry-failed-too"),
        pytest.param(False, False, True, None, True, id="failure-after-unknown"),
    ],
)  # fmt: skip
def test_refresh_failing_alert_due(
    lapsed: bool, unknown: bool, earlier_unknown: bool, grace: int | None, expected: bool
) -> None:
    assert (
        refresh_failing_alert_due(
            lapsed=lapsed, outcome_unknown=unknown, earlier_outcome_unknown=earlier_unknown,
            grace_seconds=grace,
        )
        is expected
    )  # fmt: skip
