"""What DELETE says about revocation: `revoked` false never reads as success, and the
reason names the real cause."""

from __future__ import annotations

import pytest

from tokenlife.services.connections import NO_REVOCATION_ENDPOINT, revocation_outcome

UNREADABLE = "the stored record is unreadable; nothing was sent to the provider"


@pytest.mark.parametrize(
    ("supported", "revoked", "error", "unreadable", "reason"),
    [
        (True, True, None, None, None),
        (True, False, "HTTP 503", None, "HTTP 503"),
        (False, False, None, None, NO_REVOCATION_ENDPOINT),
        (True, False, None, UNREADABLE, UNREADABLE),
        # No endpoint and an unreadable record: the record is why nothing was tried.
        (False, False, None, UNREADABLE, UNREADABLE),
    ],
)
def test_the_reason_names_why_nothing_was_revoked(
    supported: bool, revoked: bool, error: str | None, unreadable: str | None, reason: str | None
) -> None:
    outcome = revocation_outcome(supported, revoked, error, unreadable)
    assert outcome == {
        "revoked": revoked,
        "revocation_supported": supported,
        "revocation_reason": reason,
        "revocation_error": error,
    }
