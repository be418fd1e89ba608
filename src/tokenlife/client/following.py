"""Following the event feed page after page, free of I/O: both clients' `follow_pages`
ask `Following` what to send, what a page means and how long to pause before the next."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tokenlife.client import calls
from tokenlife.errors import EventsTrimmedError, UsageError
from tokenlife.models import EventPage

# An empty page that didn't move the position and came back sooner than this (a server
# with a short request timeout, one shutting down, a proxy that answers for it) is waited
# out, so a reader never asks in a tight loop.
QUIET_PAUSE = 1.0


@dataclass(slots=True)
class Following:
    """A reader's position and what it asks for; `after` moves with each page."""

    after: str | None
    limit: int | None
    wait: float
    types: Iterable[str] | str | None
    on_gap: Callable[[EventPage], object] | None

    @classmethod
    def checked(
        cls,
        after: str | None,
        limit: int | None,
        wait: float,
        types: Iterable[str] | str | None,
        on_gap: Callable[[EventPage], object] | None,
    ) -> Following:
        if not wait > 0:
            raise UsageError("follow_events needs wait > 0, or it would ask without pause")
        following = cls(after, limit, wait, types, on_gap)
        following.call()  # the checks of events(), at the call rather than the first page
        return following

    def call(self) -> calls.Call[EventPage]:
        return calls.events(self.after, self.limit, self.wait, self.types)

    def gap_handler(self, page: EventPage) -> Callable[[EventPage], object] | None:
        """What to call for a page with a gap (None: nothing to call); EventsTrimmedError
        when no one was told to handle gaps."""
        if not page.gap:
            return None
        if self.on_gap is None:
            raise EventsTrimmedError(self.after, page)
        return self.on_gap

    def moved_to(self, page: EventPage) -> float:
        """Move past `page`; the seconds from asking for it to asking for the next, at
        least (0: ask at once)."""
        quiet = not page.events and page.next_after == self.after
        self.after = page.next_after
        return min(self.wait, QUIET_PAUSE) if quiet else 0.0
