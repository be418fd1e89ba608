"""The error for each answer of the HTTP API, decided by its `error` code (and members such
as `resource`), never by its message text; by the status only when there is no code."""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tokenlife.client import EventPage, error_for
from tokenlife.errors import (
    CodeNotTakenError,
    ConnectionBusyError,
    CorruptRecordError,
    DecryptionError,
    EventsTrimmedError,
    ForbiddenError,
    IntegrationUnavailableError,
    InvalidGrantError,
    NoRefreshTokenError,
    OAuthError,
    RateLimitedError,
    ReauthorizationRequiredError,
    ServerError,
    StorageUnavailableError,
    TemporarilyUnavailableError,
    TokenlifeError,
    TransientError,
    TransportError,
    UnauthorizedError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)

NOW = 1_800_000_000.0
# A message that names the other resource: the class must not follow the text.
MISLEADING = "no integration named 'x'; no connection either"


def answer(
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    *,
    integration: str | None = None,
    connection_id: str | None = None,
) -> TokenlifeError:
    return error_for(
        status, body, headers or {}, integration=integration, connection_id=connection_id, now=NOW
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "bad_request", "message": "limit must be an integer"}, UsageError),
        (413, {"error": "too_large", "message": "the request body is too large"}, UsageError),
        (401, {"error": "unauthorized", "message": "a valid Bearer API key is required"},
         UnauthorizedError),
        (403, {"error": "forbidden", "message": "this API key may not use 'x'"}, ForbiddenError),
        (404, {"error": "not_found", "message": MISLEADING, "resource": "connection"},
         UnknownConnectionError),
        (404, {"error": "not_found", "message": MISLEADING, "resource": "integration"},
         UnknownIntegrationError),
        (404, {"error": "not_found", "message": "half-written", "resource": "connection",
               "corrupt_record": True}, CorruptRecordError),
        # A server from before `resource`: not guessed from the text.
        (404, {"error": "not_found", "message": "no integration named 'x'"}, UsageError),
        (409, {"error": "undecryptable", "message": "check the keys"}, DecryptionError),
        (500, {"error": "internal_error", "message": "see the service log"}, TokenlifeError),
        (503, {"error": "unavailable", "message": "storage or broker unavailable"},
         StorageUnavailableError),
        (503, {"error": "provider_unavailable", "message": "timeout"}, TransientError),
        (504, {"error": "timeout", "message": "the request took longer than 60 s"},
         TransientError),
        # A code this client doesn't know yet: read by its status.
        (409, {"error": "a_newer_code", "message": "?"}, UsageError),
        (503, {"error": "a_newer_code", "message": "?"}, TransientError),
        # No code: a proxy's page, or a base URL that is not tokenlife's.
        (404, None, TokenlifeError),
        (401, None, UsageError),
        (429, None, TransientError),
        (502, None, TransientError),
        (503, "Service Unavailable", TransientError),
        (500, None, TokenlifeError),
        (302, None, TokenlifeError),
    ],
)  # fmt: skip
def test_each_answer_has_its_class(status: int, body: Any, expected: type[TokenlifeError]) -> None:
    error = answer(status, body)
    assert type(error) is expected
    assert error.api_status == status
    assert error.api_error == (body.get("error") if isinstance(body, dict) else None)


def test_the_message_says_status_code_and_the_servers_words() -> None:
    error = answer(400, {"error": "bad_request", "message": "limit must be an integer"})
    assert str(error) == "tokenlife answered HTTP 400 bad_request: limit must be an integer"
    assert str(answer(502, None)) == "tokenlife answered HTTP 502"


def test_an_unknown_connection_keeps_the_servers_message() -> None:
    error = answer(404, {"error": "not_found", "message": "no connection 'u' in 'g'",
                         "resource": "connection"})  # fmt: skip
    assert str(error) == "no connection 'u' in 'g'"


def test_reauthorization_names_the_connection_the_reason_and_the_fixes() -> None:
    body = {
        "error": "reauthorization_required", "message": "g/u needs re-authorization",
        "status": "reauthorization_required", "last_error": "invalid_grant",
        "diagnosis": ["Publish the app", 3], "last_alert": None,
    }  # fmt: skip
    error = answer(409, body, integration="g", connection_id="u")
    assert isinstance(error, ReauthorizationRequiredError)
    assert (error.integration, error.connection_id, error.reason) == ("g", "u", "invalid_grant")
    assert error.diagnosis == ("Publish the app",)
    assert str(error) == "g/u needs re-authorization"  # the server's words
    # No stored error (the token expired, and there is no refresh token): the sentence.
    message = "g/u needs re-authorization: access token expired, no refresh token"
    without = answer(409, {"error": "reauthorization_required", "message": message,
                           "status": "active", "last_error": None},
                     integration="g", connection_id="u")  # fmt: skip
    assert isinstance(without, ReauthorizationRequiredError)
    assert (without.reason, str(without), without.diagnosis) == (message, message, ())
    # A server that states the reason: taken as it is.
    stated = answer(409, {**body, "reason": "invalid_grant: revoked"}, integration="g",
                    connection_id="u")  # fmt: skip
    assert isinstance(stated, ReauthorizationRequiredError)
    assert stated.reason == "invalid_grant: revoked"


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        ("2027-01-15T14:05:00Z", datetime(2027, 1, 15, 14, 5, tzinfo=UTC)),
        (None, None),
        ("not a time", None),
    ],
)
def test_no_refresh_token_says_until_when(
    expires_at: str | None, expected: datetime | None
) -> None:
    body = {"error": "no_refresh_token", "message": "this connection has no refresh token",
            "status": "active", "expires_at": expires_at}  # fmt: skip
    error = answer(409, body, integration="g", connection_id="u")
    assert isinstance(error, NoRefreshTokenError) and isinstance(error, UsageError)
    assert (error.integration, error.connection_id, error.expires_at) == ("g", "u", expected)
    assert str(error) == "g/u: this connection has no refresh token"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({}, None), ({"Retry-After": "-3"}, 0.0),
     # An HTTP date (RFC 9110 §10.2.3), counted from `now` (2027-01-15T08:00:00Z).
     ({"Retry-After": "Fri, 15 Jan 2027 08:01:30 GMT"}, 90.0),
     ({"Retry-After": "Fri, 15 Jan 2027 07:00:00 GMT"}, 0.0),
     ({"Retry-After": "1e9"}, 3600.0), ({"Retry-After": "inf"}, 3600.0),  # capped
     ({"Retry-After": "nan"}, None), ({"Retry-After": "soon"}, None)],
)  # fmt: skip
def test_retry_after_is_kept_as_a_hint(headers: dict[str, str], expected: float | None) -> None:
    for status, body in ((429, None), (503, {"error": "provider_unavailable", "message": "m"})):
        error = answer(status, body, headers)
        assert isinstance(error, TransientError) and error.retry_after == expected


def test_an_unavailable_integration_says_which_and_when_to_try_again() -> None:
    message = "integration 'g' is unavailable: discovery failed (HTTP 503); next try ..."
    body = {"error": "integration_unavailable", "message": message, "retry_after": 12}
    error = answer(503, body, {"Retry-After": "12"}, integration="g")
    assert isinstance(error, IntegrationUnavailableError)
    assert (error.integration, error.retry_after, error.next_try_at) == ("g", 12.0, NOW + 12)
    assert str(error) == message and error.last_tried_at is None
    # Without the header, the body's member; without either, the server's default.
    from_body = answer(503, body, integration="g")
    assert isinstance(from_body, TransientError) and from_body.retry_after == 12.0
    bare = answer(503, {"error": "integration_unavailable", "message": message})
    assert isinstance(bare, TransientError) and bare.retry_after == 5.0


def test_a_busy_connection_says_when_to_try_again() -> None:
    body = {"error": "connection_busy", "message": "a refresh holds it"}
    error = answer(503, body, {"Retry-After": "9"})
    assert isinstance(error, ConnectionBusyError) and error.retry_after == 9.0
    unhinted = answer(503, body)
    assert isinstance(unhinted, ConnectionBusyError) and unhinted.retry_after == 5.0


def test_the_01_call_without_now_and_with_a_connection_pair_still_works() -> None:
    before = time.time()
    error = error_for(503, {"error": "integration_unavailable", "message": "m"}, {})
    assert isinstance(error, IntegrationUnavailableError)
    assert before + 5 <= error.next_try_at <= time.time() + 5  # `now` is the clock's
    assert isinstance(error_for(404, {}, {}), TokenlifeError)
    body = {"error": "reauthorization_required", "message": "m", "last_error": "invalid_grant"}
    calls: list[Callable[[], TokenlifeError]] = [
        lambda: error_for(409, body, {}, ("g", "u")),
        lambda: error_for(409, body, {}, connection=("g", "u"), now=NOW),
    ]
    for call in calls:
        with pytest.warns(DeprecationWarning, match="integration=i, connection_id=c"):
            old = call()
        assert isinstance(old, ReauthorizationRequiredError)
        assert (old.integration, old.connection_id, old.reason) == ("g", "u", "invalid_grant")


# Every error class with arguments of its own, as built; pickled, each must come back with
# its message, those arguments and what was set on it after (api_status, retry_after).
ERRORS: list[TokenlifeError] = [
    NoRefreshTokenError("g", "u", "no refresh token", expires_at=datetime(2027, 1, 1, tzinfo=UTC)),
    ReauthorizationRequiredError("g", "u", "invalid_grant", diagnosis=("fix",), message="m"),
    IntegrationUnavailableError("g", "discovery failed", None, NOW + 5, message="m"),
    IntegrationUnavailableError("g", "discovery failed", NOW - 5, NOW + 5),
    ConnectionBusyError("busy", retry_after=4.0),
    EventsTrimmedError("3-0/0", EventPage.from_json({
        "events": [{"id": "4-0/0", "type": "t", "occurred_at": "2027-01-15T14:05:00Z",
                    "data": {"integration": "g"}}], "next_after": "4-0/0", "gap": True})),
    ServerError(502),
    RateLimitedError(7.0),
    CodeNotTakenError(TransportError("refused"), NOW),
    OAuthError("bad", error="custom_code", uri="https://docs"),
    InvalidGrantError("expired"),
    TemporarilyUnavailableError("later"),
    UnknownConnectionError("no connection 'u'"),
    TokenlifeError("plain"),
]  # fmt: skip


def pickled(error: TokenlifeError) -> TokenlifeError:
    return pickle.loads(pickle.dumps(error))  # type: ignore[no-any-return]


def pickled_as_text(error: TokenlifeError) -> TokenlifeError:
    return pickle.loads(pickle.dumps(error, protocol=0))  # type: ignore[no-any-return]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("copy_of", [pickled, pickled_as_text, copy.deepcopy, copy.copy])
def test_every_error_pickles_and_copies_whole(
    error: TokenlifeError, copy_of: Callable[[TokenlifeError], TokenlifeError]
) -> None:
    error.api_status, error.api_error = 503, "code"
    if isinstance(error, TransientError):
        error.retry_after = 11.0
    again = copy_of(error)
    assert type(again) is type(error)
    assert str(again) == str(error) and again.args == error.args
    assert vars(again) == vars(error)
    assert (again.api_status, again.api_error) == (503, "code")
