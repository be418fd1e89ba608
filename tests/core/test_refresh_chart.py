"""The refresh chart's shaping: outcomes ordered, integrations a key may not see left out."""

from __future__ import annotations

import pytest

from tokenlife.core.refresh_chart import refresh_chart, relative, tone


def test_bars_keep_the_minutes_and_only_the_allowed_integrations() -> None:
    minutes = [
        (100, {("crm", "refreshed"): 3, ("hr", "transient_failure"): 2}),
        (101, {}),
        (102, {("crm", "newer_outcome"): 1, ("crm", "transient_failure"): 1}),
    ]
    chart = refresh_chart(minutes, lambda name: name == "crm")
    assert [b.minute for b in chart.bars] == [100, 101, 102]
    assert chart.bars[0].counts == (("refreshed", 3),)
    assert chart.bars[1].counts == ()
    # Known outcomes in their fixed order, unknown ones after them.
    assert chart.bars[2].counts == (("transient_failure", 1), ("newer_outcome", 1))
    assert chart.totals == (("refreshed", 3), ("transient_failure", 1), ("newer_outcome", 1))
    assert (chart.total, chart.peak) == (5, 3)
    everyone = refresh_chart(minutes, lambda name: True)
    assert dict(everyone.totals)["transient_failure"] == 3


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "in 5 s"), (-5, "5 s ago"), (600, "in 10 min"), (5400, "in 1.5 h"),
     (-7200, "2 h ago"), (3 * 86400, "in 3 d")],
)  # fmt: skip
def test_relative_times(seconds: float, text: str) -> None:
    assert relative(seconds) == text


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("refreshed", "good"), ("not_due", "harmless"), ("transient_failure", "bad"),
     ("crashed", "bad"), ("whatever_next", "bad")],
)  # fmt: skip
def test_tones(outcome: str, expected: str) -> None:
    assert tone(outcome) == expected
