"""compute_backoff: exponential steps, equal jitter, a cap, and Retry-After as a floor."""

from __future__ import annotations

import math

import pytest

from tokenlife.core.backoff import compute_backoff


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        # Equal jitter: the wait lies in [step / 2, step), step = min(cap, base * 2**attempt).
        pytest.param(0, 0.0, 0.5, id="0-low"),
        pytest.param(0, 0.999, 0.9995, id="0-high"),
        pytest.param(1, 0.0, 1.0, id="1-low"),
        pytest.param(1, 0.999, 1.999, id="1-high"),
        pytest.param(2, 0.0, 2.0, id="2-low"),
        pytest.param(2, 0.999, 3.998, id="2-high"),
        pytest.param(3, 0.5, 6.0, id="3-middle"),
        pytest.param(5, 0.0, 16.0, id="5-low"),
        pytest.param(5, 0.999, 31.984, id="5-high"),
        pytest.param(6, 0.0, 30.0, id="6-capped-low"),
        pytest.param(6, 0.999, 59.97, id="6-capped-high"),
        pytest.param(20, 0.999, 59.97, id="20-capped"),
        pytest.param(1000, 0.0, 30.0, id="1000-capped"),
    ],
)
def test_steps_with_base_1_cap_60(attempt: int, jitter: float, expected: float) -> None:
    delay = compute_backoff(attempt, base=1.0, cap=60.0, jitter=jitter)
    assert delay == pytest.approx(expected)
    assert delay < 60.0


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "jitter", "expected"),
    [
        pytest.param(0, 2.0, 120.0, 0.0, 1.0, id="settings-default-first"),
        pytest.param(5, 2.0, 120.0, 0.0, 32.0, id="settings-default-fifth"),
        pytest.param(6, 2.0, 120.0, 0.0, 60.0, id="settings-default-capped"),
        pytest.param(3, 5.0, 5.0, 0.0, 2.5, id="cap-equals-base"),
        pytest.param(3, 5.0, 5.0, 0.999, 4.9975, id="cap-equals-base-high"),
        pytest.param(2, 0.25, 100.0, 0.0, 0.5, id="fractional-base"),
    ],
)
def test_base_and_cap(
    attempt: int, base: float, cap: float, jitter: float, expected: float
) -> None:
    assert compute_backoff(attempt, base=base, cap=cap, jitter=jitter) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", range(12))
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.999])
def test_never_above_cap_nor_below_half_step(attempt: int, jitter: float) -> None:
    delay = compute_backoff(attempt, base=2.0, cap=30.0, jitter=jitter)
    step = min(30.0, 2.0 * 2**attempt)
    assert step / 2 <= delay < step <= 30.0


@pytest.mark.parametrize(
    ("attempt", "jitter", "retry_after", "expected"),
    [
        pytest.param(0, 0.0, None, 0.5, id="no-hint"),
        pytest.param(0, 0.0, 10.0, 10.0, id="hint-above-delay"),
        pytest.param(0, 0.999, 0.1, 0.9995, id="hint-below-delay"),
        pytest.param(1, 0.0, 1.0, 1.0, id="hint-equal-delay"),
        pytest.param(0, 0.0, 0.0, 0.5, id="hint-zero"),
        pytest.param(10, 0.999, 600.0, 600.0, id="hint-above-cap-not-capped"),
        pytest.param(10, 0.0, 45.0, 45.0, id="hint-between-half-and-cap"),
        pytest.param(10, 0.0, 20.0, 30.0, id="hint-below-capped-delay"),
    ],
)
def test_retry_after_is_a_floor(
    attempt: int, jitter: float, retry_after: float | None, expected: float
) -> None:
    delay = compute_backoff(attempt, base=1.0, cap=60.0, jitter=jitter, retry_after=retry_after)
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "jitter"),
    [
        pytest.param(-1, 1.0, 60.0, 0.0, id="negative-attempt"),
        pytest.param(0, 0.0, 60.0, 0.0, id="zero-base"),
        pytest.param(0, -1.0, 60.0, 0.0, id="negative-base"),
        pytest.param(0, 10.0, 5.0, 0.0, id="cap-below-base"),
        pytest.param(0, 1.0, 60.0, -0.1, id="negative-jitter"),
        pytest.param(0, 1.0, 60.0, 1.0, id="jitter-one"),
        pytest.param(0, 1.0, 60.0, 1.5, id="jitter-above-one"),
        pytest.param(0, 1.0, 60.0, math.nan, id="jitter-nan"),
    ],
)
def test_invalid_arguments(attempt: int, base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="required"):
        compute_backoff(attempt, base=base, cap=cap, jitter=jitter)


def test_a_huge_attempt_number_stays_at_the_cap() -> None:
    assert compute_backoff(5000, base=1, cap=60, jitter=0.5) == 45.0
