"""core.refresh_refusal: the one rule for "refresh now" (API, dashboard, CLI)."""

from __future__ import annotations

import pytest

from tokenlife.core.policy import Status
from tokenlife.core.refresh_refusal import RefusalKind, refresh_refusal, requested_due

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "last_error", "has_rt", "expires_at", "kind", "in_reason"),
    [
        (Status.ACTIVE, None, True, NOW + 60, None, None),
        (Status.DEGRADED, "server_error", True, NOW - 60, None, None),  # may recover
        (Status.REAUTHORIZATION_REQUIRED, "invalid_grant", True, NOW + 60,
         RefusalKind.REAUTHORIZATION_REQUIRED, "invalid_grant"),
        (Status.REAUTHORIZATION_REQUIRED, None, True, None,
         RefusalKind.REAUTHORIZATION_REQUIRED, "status"),
        (Status.ACTIVE, None, False, NOW - 1, RefusalKind.REAUTHORIZATION_REQUIRED,
         "access token expired, no refresh token"),
        (Status.ACTIVE, None, False, NOW + 60, RefusalKind.NO_REFRESH_TOKEN,
         "valid until 08:01 UTC, in 1 min"),
        (Status.ACTIVE, None, False, None, RefusalKind.NO_REFRESH_TOKEN,
         "for as long as the provider allows"),
    ],
)  # fmt: skip
def test_refusals(
    status: Status, last_error: str | None, has_rt: bool, expires_at: float | None,
    kind: RefusalKind | None, in_reason: str | None,
) -> None:  # fmt: skip
    refusal = refresh_refusal(status=status, last_error=last_error, has_refresh_token=has_rt,
                              expires_at=expires_at, now=NOW)  # fmt: skip
    if kind is None:
        assert refusal is None
        return
    assert refusal is not None and refusal.kind is kind
    assert in_reason is not None and in_reason in refusal.reason
    assert "reconnect link" in refusal.fix


@pytest.mark.parametrize(("stored", "due"), [(NOW + 900, NOW + 900), (None, NOW)])
def test_a_refresh_asked_for_now_is_queued_at_the_stored_due_time(
    stored: float | None, due: float
) -> None:
    assert requested_due(stored, NOW) == due
