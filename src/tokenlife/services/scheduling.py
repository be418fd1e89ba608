"""When a stored connection should next be looked at, from the pure timing policies."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from tokenlife.core import expiry_alerts
from tokenlife.core.integration import Integration
from tokenlife.core.refresh_timing import next_refresh_at
from tokenlife.core.tokens import TokenSet


@dataclass
class SchedulePolicy:
    """Binds the settings (lead times) and a source of jitter to the pure functions."""

    expiry_lead_seconds: Sequence[float]
    rng: random.Random = field(default_factory=random.Random)

    def next_check(
        self,
        integration: Integration,
        tokens: TokenSet,
        now: float,
        sent: Collection[float],
        last_refreshed_at: float | None = None,
    ) -> float | None:
        """A refresh ahead of expiry (or a keep-alive) when there is a refresh token; the
        next expiry alert or the expiry itself when there is none; None when neither."""
        if tokens.refresh_token is not None:
            return next_refresh_at(
                expires_at=tokens.expires_at,
                lifetime_seconds=tokens.lifetime_seconds,
                last_refreshed_at=now if last_refreshed_at is None else last_refreshed_at,
                timing=integration.refresh_timing,
                jitter=self.rng.random(),
                now=now,
            )
        if tokens.expires_at is None:
            return None
        return expiry_alerts.next_check_at(
            expires_at=tokens.expires_at,
            lead_times=self.expiry_lead_seconds,
            sent=sent,
            now=now,
        )
