"""A page of connections, as GET /api/connections and the in-process
`Tokenlife.connections` read it: the same bounds and the same status filter."""

from __future__ import annotations

from collections.abc import Sequence

from tokenlife.adapters.connection_listing import ConnectionListing, Page
from tokenlife.core.policy import Status

# A page holds at most this many connections, however many are asked for.
MAX_PAGE = 500


def status_filter(value: str | None) -> Status | None:
    """The status asked for; ValueError (its message fit for the caller) for another."""
    if value is not None and value not in {s.value for s in Status}:
        raise ValueError(f"status must be one of {', '.join(Status)}")
    return None if value is None else Status(value)


async def connections_page(
    listing: ConnectionListing,
    integrations: Sequence[str],
    status: Status | None,
    limit: int,
    cursor: str | None,
    now: float,
) -> Page:
    """One page, `limit` bounded to 1..MAX_PAGE; the status as readers see it."""
    return await listing.page(integrations, status, now, min(MAX_PAGE, max(1, limit)), cursor)
