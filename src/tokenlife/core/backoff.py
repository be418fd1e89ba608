"""Exponential backoff with jitter, as a pure function (the retry code only applies it)."""

from __future__ import annotations


def compute_backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (0-based).

    `jitter` is a random number in [0, 1) chosen by the caller; it spreads the wait over
    the upper half of the exponential step ("equal jitter") so retries of many tasks that
    failed together don't arrive together. A server's Retry-After is a floor, not capped.
    """
    if attempt < 0 or base <= 0 or cap < base or not 0 <= jitter < 1:
        raise ValueError("attempt >= 0, 0 < base <= cap and 0 <= jitter < 1 are required")
    step = min(cap, base * 2.0 ** min(attempt, 64))  # 2**1024 overflows a float
    delay = step / 2 + step / 2 * jitter
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay
