"""A provider outage is one alert, not one per connection: the scheduled refreshes' outcomes
feed their host's circuit breaker (core/provider_breaker.py), the worker whose batch opens
it raises alert.provider_degraded for each integration on that host, and the one whose probe
gets an answer emits provider.recovered and brings the held refreshes back.

Only the worker that moved the breaker (the script's reply says so) emits: two workers never
both alert. Emitting is best effort after the move; a worker that dies between the two
leaves the breaker open without its alert, and the recovery still comes.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.provider_breakers import BreakerChange, Hold, ProviderBreakers
from tokenlife.core import events
from tokenlife.core.integration import Integration
from tokenlife.core.provider_breaker import (
    ANSWERED,
    BreakerPolicy,
    at_risk,
    breaker_scope,
    degraded_message,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Tally:
    """One host's outcomes in a batch."""

    answered: int = 0
    probe_answered: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    probe_failures: int = 0

    def add(self, kind: str, probe: bool) -> None:
        if kind == ANSWERED:
            if probe:
                self.probe_answered += 1
            else:
                self.answered += 1
        else:
            self.failures[kind] += 1
            self.probe_failures += probe


class ProviderHealth:
    def __init__(
        self,
        *,
        breakers: ProviderBreakers,
        events_: EventStream,
        integrations: Mapping[str, Integration],
        policy: BreakerPolicy,
        rng: random.Random | None = None,
    ) -> None:
        self._breakers = breakers
        self._events = events_
        self._integrations = integrations
        self._policy = policy
        self._rng = rng or random.Random()

    def hold(self, integration: Integration, now: float) -> Hold | None:
        """What a scheduled claim of this integration passes its host's breaker; None when
        breakers are off."""
        if not self._policy.enabled:
            return None
        # Jittered, so the refreshes held together don't come back together.
        pause = self._policy.pause_seconds * (1 + self._rng.random())
        scope = breaker_scope(integration.token_url)
        return Hold(scope, now, self._policy.probe_seconds, pause)

    async def observe(self, tallies: Mapping[str, Tally], now: float) -> None:
        """Count a batch's outcomes per host; alert when one opens, resolve when one closes.
        Best effort: a count that could not be written costs the breaker one batch."""
        if not self._policy.enabled:
            return
        for scope, tally in tallies.items():
            try:
                change = await self._breakers.record(
                    scope, now, self._policy, answered=tally.answered,
                    probe_answered=tally.probe_answered, failures=tally.failures,
                    probe_failures=tally.probe_failures,
                )  # fmt: skip
                if change.state == "opened":
                    await self._degraded(scope, change, now)
                elif change.state == "recovered":
                    await self._recovered(scope, change, now)
                elif change.state == "closed" and tally.probe_answered:
                    # A probe ran, so a gate was open, but the breaker is closed: the worker
                    # that closed it died before the gates went. They go now.
                    await self._breakers.close(scope, now, self._policy.recovery_rate)
            except Exception:
                log.warning("could not count refresh outcomes of %s for its breaker", scope,
                            exc_info=True)  # fmt: skip

    def _on(self, scope: str) -> list[Integration]:
        return sorted(
            (i for i in self._integrations.values() if breaker_scope(i.token_url) == scope),
            key=lambda i: i.name,
        )

    async def _degraded(self, scope: str, change: BreakerChange, now: float) -> None:
        integrations = self._on(scope)
        try:
            deadlines, truncated = await self._breakers.deadlines(
                (i.name for i in integrations), now
            )
        except Exception:
            # The alert matters more than its count: sent with none ("at least" 0).
            log.warning("could not count the connections at risk at %s", scope, exc_info=True)
            deadlines, truncated = {}, True
        failures = round(change.failures)
        outcomes = round(change.failures + change.answered)
        log.error("provider %s looks degraded: %s of the last %s refreshes failed (%s); "
                  "scheduled refreshes are held, one probe every %g s", scope, failures,
                  outcomes, dict(change.kinds), self._policy.probe_seconds)  # fmt: skip
        for integration in integrations:
            risk = at_risk(deadlines.get(integration.name, []), now, truncated)
            await self._events.emit(
                events.PROVIDER_DEGRADED, integration.name, None, now,
                provider=integration.provider, host=scope,
                message=degraded_message(scope, change.kinds, risk, self._policy),
                failure_kinds=dict(change.kinds), failures=failures, outcomes=outcomes,
                window_seconds=self._policy.window_seconds,
                probe_every_seconds=self._policy.probe_seconds,
                connections_at_risk=risk.as_dict(),
            )  # fmt: skip

    async def _recovered(self, scope: str, change: BreakerChange, now: float) -> None:
        """Resolve first, then release: a release that fails part-way (the held ones come
        back after their pause anyway) must not leave the alert open, and a release still
        paging when the host fails again must not resolve the next alert."""
        held = await self._breakers.held_count(scope)
        for integration in self._on(scope):
            await self._events.emit(
                events.PROVIDER_RECOVERED, integration.name, None, now,
                provider=integration.provider, host=scope,
                degraded_since=events.iso8601(change.opened_at),
                probes_failed=change.probes_failed, held_refreshes_resumed=held,
            )  # fmt: skip
        released = await self._breakers.close(
            scope, now, self._policy.recovery_rate, change.opened_at
        )
        log.info("provider %s answers again; %s held refreshes resume at %g/s", scope,
                 released, self._policy.recovery_rate)  # fmt: skip
