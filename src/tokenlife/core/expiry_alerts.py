"""Tokens without a refresh token: warn at lead times before they lapse, once each."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def due_lead(
    *, expires_at: float, lead_times: Sequence[float], sent: Collection[float], now: float
) -> float | None:
    """The lead time to alert for now, if any: the shortest one already reached.

    A token that arrives with 3 days left has passed the 7-day mark already; one alert
    (for the shortest reached lead) says enough, and the longer ones count as sent.
    """
    if now >= expires_at:
        return None
    reached = [lead for lead in lead_times if now >= expires_at - lead and lead not in sent]
    return min(reached) if reached else None


def leads_covered(lead: float, lead_times: Sequence[float]) -> set[float]:
    """Alerting for `lead` also covers every longer lead time."""
    return {t for t in lead_times if t >= lead}


def next_check_at(
    *, expires_at: float, lead_times: Sequence[float], sent: Collection[float], now: float
) -> float:
    """The next moment something happens: an unsent lead time is reached, or expiry.

    `now` when a lead time has been reached and not alerted yet (a token that arrives
    with less than a day left must not wait silently until it expires).
    """
    if due_lead(expires_at=expires_at, lead_times=lead_times, sent=sent, now=now) is not None:
        return now
    upcoming = [expires_at - lead for lead in lead_times if lead not in sent]
    upcoming = [t for t in upcoming if t > now]
    return min([*upcoming, expires_at])
