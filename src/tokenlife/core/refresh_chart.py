"""The dashboard's "refreshes over the last hour" as data: one stacked bar per minute, and
the outcomes in a fixed order (good first). Pure: the minutes come in, the bars go out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# Known outcomes first, in the order a reader scans them: done, harmless, failing. An
# outcome not listed (a newer worker's) still shows, after these.
OUTCOME_ORDER = (
    "refreshed", "not_due", "locked", "throttled", "gone", "waiting", "alerted", "lapsed",
    "unscheduled", "transient_failure",
    "conflict", "reauthorization_required", "save_failed", "corrupt_record", "undecryptable",
    "integration_unavailable", "unknown_integration", "crashed",
)  # fmt: skip
GOOD = frozenset({"refreshed"})
# ExpiryWatch's outcomes (a token without a refresh token looked at) are bookkeeping too.
HARMLESS = frozenset({"not_due", "locked", "throttled", "gone", "conflict", "waiting",
                      "alerted", "lapsed", "unscheduled"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bar:
    minute: int  # epoch seconds // 60
    counts: tuple[tuple[str, int], ...]  # (outcome, refreshes), in `outcomes` order

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True, slots=True)
class RefreshChart:
    bars: tuple[Bar, ...]
    totals: tuple[tuple[str, int], ...]  # per outcome over the whole window, ordered

    @property
    def total(self) -> int:
        return sum(n for _, n in self.totals)

    @property
    def peak(self) -> int:
        return max((b.total for b in self.bars), default=0)


def refresh_chart(
    minutes: Sequence[tuple[int, Mapping[tuple[str, str], int]]],
    allows: Callable[[str], bool],
) -> RefreshChart:
    """Bars of the integrations `allows` admits; minutes given oldest first."""
    per_minute: list[tuple[int, Counter[str]]] = []
    totals: Counter[str] = Counter()
    for minute, counts in minutes:
        mine: Counter[str] = Counter()
        for (integration, outcome), n in counts.items():
            if allows(integration) and n > 0:
                mine[outcome] += n
        totals.update(mine)
        per_minute.append((minute, mine))
    order = ordered(totals)
    bars = tuple(
        Bar(minute, tuple((o, counts[o]) for o in order if counts[o]))
        for minute, counts in per_minute
    )
    return RefreshChart(bars, tuple((o, totals[o]) for o in order))


def ordered(outcomes: Mapping[str, int]) -> list[str]:
    known = [o for o in OUTCOME_ORDER if outcomes.get(o)]
    return known + sorted(o for o, n in outcomes.items() if n and o not in OUTCOME_ORDER)


def tone(outcome: str) -> str:
    """How the chart colours an outcome: good, harmless, or bad."""
    if outcome in GOOD:
        return "good"
    return "harmless" if outcome in HARMLESS else "bad"


def relative(seconds: float) -> str:
    """A duration as a person reads it: "in 3 h" / "5 min ago". Pure."""
    ahead = seconds >= 0
    left = abs(seconds)
    if left < 60:
        text = f"{int(left)} s"
    elif left < 3600:
        text = f"{int(left // 60)} min"
    elif left < 2 * 86400:
        text = f"{left / 3600:.1f} h".replace(".0 h", " h")
    else:
        text = f"{int(left // 86400)} d"
    return f"in {text}" if ahead else f"{text} ago"
