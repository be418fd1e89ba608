"""What a caller of a refresh is told, per outcome: the access-token path and the
library's `refresh` share it."""

from __future__ import annotations

import pytest

from tokenlife.errors import (
    RateLimitedError,
    ReauthorizationRequiredError,
    ServerError,
    TransientError,
)
from tokenlife.services.refresh_answer import raise_unless_fresh
from tokenlife.services.refresh_outcomes import Outcome, Result


@pytest.mark.parametrize("outcome", [Outcome.REFRESHED, Outcome.CONFLICT])
def test_fresh_tokens_raise_nothing(outcome: Outcome) -> None:
    raise_unless_fresh(Result(outcome), "google", "user-42")


@pytest.mark.parametrize(
    ("result", "raised", "retry_after"),
    [
        # Without the error it carries, a transient failure is still no success.
        (Result(Outcome.TRANSIENT_FAILURE), TransientError, 5.0),
        (Result(Outcome.TRANSIENT_FAILURE, ServerError(503)), TransientError, 5.0),
        (Result(Outcome.TRANSIENT_FAILURE, RateLimitedError(30.0)), RateLimitedError, 30.0),
        (Result(Outcome.SAVE_FAILED), TransientError, 2.0),
        (Result(Outcome.REAUTHORIZATION_REQUIRED), ReauthorizationRequiredError, None),
    ],
)
def test_what_left_no_fresh_tokens_raises(
    result: Result, raised: type[Exception], retry_after: float | None
) -> None:
    with pytest.raises(raised) as caught:
        raise_unless_fresh(result, "google", "user-42")
    assert getattr(caught.value, "retry_after", None) == retry_after
