"""A circuit breaker per provider host: what counts against a provider, when it is
degraded, and what the alert about it says. Pure; the state lives in Redis and changes in
one script per step (adapters/provider_breakers.py), because every worker process shares it.

The breaker is keyed by the token endpoint's host, not the catalogue's provider name: two
`custom` integrations on different servers fail apart, and every Microsoft tenant shares
login.microsoftonline.com and fails together.

Closed: every scheduled refresh goes ahead, and the outcome of every refresh a worker
runs (scheduled, or queued by POST .../refresh and Refresh now) is counted over a sliding
window (two buckets of `window_seconds`). When at least `min_failures` transient failures
fall in the window *and* they are at least `failure_rate` of the outcomes, it opens: one
alert.provider_degraded per integration on that host. Open: scheduled refreshes of the host
are held (they come back after `pause_seconds`, or when their token lapses, so their status
says so); one refresh every `probe_seconds` goes ahead as a probe. A probe that gets any
answer from the provider (new tokens, or a refusal of that one grant) closes it:
provider.recovered, and the held refreshes come due again, soonest-lapsing first, at
`recovery_rate` per second. Refreshes someone asks for now (GET /token, POST /refresh,
`connections refresh`) are not held: the person or app asking gets a real attempt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from tokenlife.core import events
from tokenlife.errors import (
    EndpointTimeoutError,
    OAuthError,
    ProviderError,
    RateLimitedError,
    ServerError,
    TemporarilyUnavailableError,
    TransportError,
)

# An outcome that shows the provider answering: it counts for the provider, and a probe
# that gets it closes the breaker.
ANSWERED = "answered"
# The refresh outcomes (services/refresh_outcomes.Outcome values) that carry an answer.
_ANSWERED_OUTCOMES = frozenset({"refreshed", "reauthorization_required"})
# Horizons the alert counts connections at risk within (seconds), besides those lapsed.
AT_RISK_HORIZONS = (3600, 86400)
# The alert names at most this many connections (the soonest to lapse).
AT_RISK_NAMED = 10


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    min_failures: int = 20
    failure_rate: float = 0.5
    window_seconds: float = 60.0
    probe_seconds: float = 30.0
    pause_seconds: float = 600.0
    recovery_rate: float = 50.0

    def __post_init__(self) -> None:
        if self.min_failures < 0:
            raise ValueError("min_failures must be 0 (off) or more")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        for name in ("window_seconds", "probe_seconds", "pause_seconds", "recovery_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.pause_seconds < self.probe_seconds:
            raise ValueError("pause_seconds must be at least probe_seconds")

    @property
    def enabled(self) -> bool:
        return self.min_failures > 0


@cache
def breaker_scope(token_url: str) -> str:
    """The host (and port) whose outage this integration shares. Asked twice per scheduled
    refresh (its claim and its tally) for a handful of token URLs: parsed once each."""
    parts = urlsplit(token_url)
    return (parts.netloc or token_url).lower()


def failure_kind(outcome: str, error: BaseException | None) -> str | None:
    """What a scheduled refresh says about its provider: ANSWERED, a kind of transient
    failure (timeout, connection_failed, http_503, rate_limited, temporarily_unavailable,
    invalid_response), or None when it says nothing (a lost race, a save that failed,
    a connection that was never sent)."""
    if outcome in _ANSWERED_OUTCOMES:
        return ANSWERED
    if outcome != "transient_failure" or error is None:
        return None
    if isinstance(error, EndpointTimeoutError):
        return "timeout"
    if isinstance(error, TransportError):
        return "connection_failed"
    if isinstance(error, ServerError):
        return f"http_{error.status}"
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if isinstance(error, TemporarilyUnavailableError):
        return str(error.error)  # temporarily_unavailable or server_error
    if isinstance(error, OAuthError):
        # invalid_client (an expired secret), unknown codes: the provider answered.
        return ANSWERED
    if isinstance(error, ProviderError):
        return "invalid_response"
    return None


@dataclass(frozen=True, slots=True)
class AtRisk:
    """An integration's connections whose access token has lapsed or lapses soon, while
    their refreshes are held."""

    lapsed: int
    within: Mapping[int, int]  # horizon seconds -> connections lapsing within it
    soonest: tuple[tuple[str, float], ...]  # (connection id, lapses at), soonest first
    truncated: bool  # the count stopped at the read limit: "at least"

    def as_dict(self) -> dict[str, Any]:
        return {
            "lapsed": self.lapsed,
            **{f"within_{_hours(h)}h": n for h, n in self.within.items()},
            "soonest": [
                {"connection_id": c, "lapses_at": events.iso8601(at)} for c, at in self.soonest
            ],
            "at_least": self.truncated,
        }


def at_risk(deadlines: Iterable[tuple[str, float]], now: float, truncated: bool) -> AtRisk:
    """Count (connection id, access token lapses at) pairs, soonest first, by horizon."""
    ordered = sorted(deadlines, key=lambda pair: pair[1])
    lapsed = sum(1 for _, at in ordered if at <= now)
    within = {h: sum(1 for _, at in ordered if now < at <= now + h) for h in AT_RISK_HORIZONS}
    return AtRisk(lapsed, within, tuple(ordered[:AT_RISK_NAMED]), truncated)


def degraded_message(
    scope: str, kinds: Mapping[str, int], risk: AtRisk, policy: BreakerPolicy
) -> str:
    ranked = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
    failures = ", ".join(f"{kind} x{n}" for kind, n in ranked)
    lapsing = risk.within.get(AT_RISK_HORIZONS[0], 0)
    more = "at least " if risk.truncated else ""
    return (
        f"Refreshes at {scope} keep failing ({failures or 'transient failures'}): the provider "
        f"looks degraded. Scheduled refreshes of its connections are held, and one refresh "
        f"per shard every {policy.probe_seconds:g} s probes it; they resume by themselves when it "
        f"answers. {more}{risk.lapsed} connection(s) of this integration have a lapsed access "
        f"token and {more}{lapsing} more lapse within the hour; apps asking for their tokens "
        f"get a refresh attempt of their own. Check the provider's status page; nothing needs "
        f"changing here."
    )


def _hours(seconds: int) -> int:
    return math.ceil(seconds / 3600)
