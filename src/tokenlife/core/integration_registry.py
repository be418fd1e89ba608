"""The configured integrations as services see them, read at call time.

An integration whose endpoints come from OIDC Discovery is *unavailable* while its issuer
has not answered and no cached discovery document was found: it stays configured, calls
that need it fail with `IntegrationUnavailableError` (retry later), and a background
retry makes it available when discovery succeeds. One that started from a cached
document is available but *stale*: the retry fetches the live document until it succeeds
and rebuilds the integration when the document changed (endpoints, revocation endpoint,
RFC 9207 `iss`). As a `Mapping` the registry holds the available integrations only, so
code that iterates or looks up by name sees exactly what it can use; `require` tells an
unavailable integration from an unknown one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenlife.core.events import iso8601
from tokenlife.core.integration import Integration
from tokenlife.errors import IntegrationUnavailableError, UnknownIntegrationError


@dataclass(frozen=True, slots=True)
class Unavailable:
    """An integration waiting for its discovery document."""

    name: str
    issuer: str
    reason: str
    since: float
    last_tried_at: float
    next_try_at: float
    # Builds the integration from a discovery document once one is fetched.
    resolve: Callable[[Mapping[str, Any]], Integration] = field(repr=False, compare=False)
    # A stale integration's cached document, which the live one is compared with.
    cached: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "issuer": self.issuer,
            "reason": self.reason,
            "unavailable_since": iso8601(self.since),
            "last_tried_at": iso8601(self.last_tried_at),
            "next_try_at": iso8601(self.next_try_at),
        }


class IntegrationRegistry(Mapping[str, Integration]):
    """Available integrations by name, plus the unavailable ones; mutated in place."""

    def __init__(self, available: Mapping[str, Integration] | None = None) -> None:
        self._available: dict[str, Integration] = dict(available or {})
        self._unavailable: dict[str, Unavailable] = {}
        self._stale: dict[str, Unavailable] = {}

    def __getitem__(self, name: str) -> Integration:
        return self._available[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._available)

    def __len__(self) -> int:
        return len(self._available)

    @property
    def unavailable(self) -> Mapping[str, Unavailable]:
        return dict(self._unavailable)

    @property
    def stale(self) -> Mapping[str, Unavailable]:
        """Available integrations built from a cached discovery document, until a live
        fetch succeeds."""
        return dict(self._stale)

    @property
    def awaiting_discovery(self) -> bool:
        return bool(self._unavailable or self._stale)

    def mark_available(self, integration: Integration) -> None:
        """Built from a live document (or one another process fetched live)."""
        self._unavailable.pop(integration.name, None)
        self._stale.pop(integration.name, None)
        self._available[integration.name] = integration

    def mark_stale(self, integration: Integration, entry: Unavailable) -> None:
        """Usable, built from `entry.cached`; the live document is still to be fetched."""
        self._unavailable.pop(entry.name, None)
        self._available[entry.name] = integration
        self._stale[entry.name] = entry

    def mark_fresh(self, name: str) -> None:
        """The live document is the cached one: nothing to rebuild."""
        self._stale.pop(name, None)

    def mark_unavailable(self, entry: Unavailable) -> None:
        self._available.pop(entry.name, None)
        self._stale.pop(entry.name, None)
        self._unavailable[entry.name] = entry

    def require(self, name: str) -> Integration:
        """The integration, or the error saying why it can't be used now."""
        integration = self._available.get(name)
        if integration is not None:
            return integration
        entry = self._unavailable.get(name)
        if entry is None:
            raise UnknownIntegrationError(f"no integration named {name!r}")
        raise IntegrationUnavailableError(
            name, entry.reason, entry.last_tried_at, entry.next_try_at
        )


def require_integration(integrations: Mapping[str, Integration], name: str) -> Integration:
    """Services' lookup: works on a plain mapping too (tests build services with dicts)."""
    if isinstance(integrations, IntegrationRegistry):
        return integrations.require(name)
    integration = integrations.get(name)
    if integration is None:
        raise UnknownIntegrationError(f"no integration named {name!r}")
    return integration
