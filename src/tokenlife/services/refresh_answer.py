"""What a caller who asked for a refresh is told when it did not end in fresh tokens: the
same errors from the access-token path (services/access.py) and the in-process
`Tokenlife.refresh`."""

from __future__ import annotations

from tokenlife.errors import ReauthorizationRequiredError, TransientError
from tokenlife.services.refresh_outcomes import Outcome, Result

# What a caller is told to wait when the bound ran out or Redis failed: a refresh in
# flight is done by then or has given up (the HTTP timeout), and a slot has come free.
RETRY_AFTER_SECONDS = 2.0
# A provider failure: the scheduled retry comes first; don't hammer in between.
PROVIDER_RETRY_AFTER_SECONDS = 5.0


def transient(message: str, retry_after: float) -> TransientError:
    error = TransientError(message)
    error.retry_after = retry_after
    return error


def raise_unless_fresh(result: Result, integration: str, connection_id: str) -> None:
    """Raise for a refresh that left no fresh tokens; return for REFRESHED and CONFLICT
    (someone else's refresh was saved first: fresh either way)."""
    if result.outcome is Outcome.REAUTHORIZATION_REQUIRED:
        raise ReauthorizationRequiredError(
            integration, connection_id, str(result.error)
        ) from result.error
    if result.outcome is Outcome.TRANSIENT_FAILURE:
        error = result.error
        if error is None:  # not fresh all the same: never an answer of success
            raise transient("the refresh failed for now", PROVIDER_RETRY_AFTER_SECONDS)
        if getattr(error, "retry_after", None) is None:
            error = transient(str(error), PROVIDER_RETRY_AFTER_SECONDS)
        raise error
    if result.outcome is Outcome.SAVE_FAILED:
        raise transient("the refreshed tokens could not be stored", RETRY_AFTER_SECONDS)
