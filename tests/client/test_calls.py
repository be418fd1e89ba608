"""What each call sends and how its answer is read, without a network: the part both
clients share (tokenlife.client.calls)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tokenlife.client import calls
from tokenlife.errors import TokenlifeError, TransientError, UnknownIntegrationError, UsageError
from tokenlife.models import AccessToken, EventPage, Readiness

NOW = 1_800_000_000.0
SECRET = "ya29.the-token-itself"


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_a_token_answer_is_read_into_an_access_token() -> None:
    call = calls.access_token("google", "u/1")
    assert (call.method, call.path) == ("POST", "/api/connections/google/u%2F1/token")
    answer = {"access_token": SECRET, "token_type": "Bearer",
              "expires_at": "2027-01-15T14:05:00Z", "expires_in": 3599}  # fmt: skip
    token = call.answer(200, {}, body(answer), NOW)
    expires_at = datetime(2027, 1, 15, 14, 5, tzinfo=UTC).timestamp()
    assert token == AccessToken(SECRET, "Bearer", expires_at)


@pytest.mark.parametrize(
    "content",
    [
        body({"access_token": SECRET, "token_type": 7, "expires_at": None}),
        body([SECRET]),
        SECRET.encode(),
        b"",
        b"\xff\xfe",
    ],
)
def test_an_unreadable_answer_names_no_value(content: bytes) -> None:
    with pytest.raises(TokenlifeError, match="unexpected body") as raised:
        calls.access_token("google", "u").answer(200, {}, content, NOW)
    assert type(raised.value) is TokenlifeError
    assert SECRET not in str(raised.value) and raised.value.__cause__ is None


def test_an_answer_other_than_the_one_expected_is_an_error() -> None:
    refused = body({"error": "not_found", "message": "m", "resource": "integration"})
    with pytest.raises(UnknownIntegrationError):
        calls.create_connect_session("nope", "u", None, None).answer(404, {}, refused, NOW)
    # 200 where the API answers 201 or 202: not what the route does, so not trusted.
    with pytest.raises(TokenlifeError, match="HTTP 200"):
        calls.refresh("g", "u").answer(200, {}, body({"queued": True}), NOW)
    assert calls.refresh("g", "u").answer(202, {}, body({"queued": True}), NOW) is None


def test_readiness_is_read_from_its_503_too_but_a_proxys_503_is_transient() -> None:
    checks = {"ready": False, "redis": True, "beat": False, "beat_last_tick_seconds_ago": None,
              "integrations_unavailable": [{"name": "g", "reason": "HTTP 503"}]}  # fmt: skip
    readiness = calls.ready().answer(503, {}, body(checks), NOW)
    assert readiness == Readiness(False, True, False, None, ({"name": "g", "reason": "HTTP 503"},))
    with pytest.raises(TransientError):
        calls.ready().answer(503, {"Retry-After": "1"}, b"<html>busy</html>", NOW)
    assert not calls.ready().authorized  # /readyz needs no key: none is sent


def test_the_connection_page_carries_only_the_filters_given() -> None:
    assert calls.connection_page(None, None, 100, None).params == {"limit": "100"}
    call = calls.connection_page("google", "degraded", 5, "c1")
    assert call.params == {"limit": "5", "integration": "google", "status": "degraded",
                           "cursor": "c1"}  # fmt: skip
    with pytest.raises(TokenlifeError, match="next_cursor"):
        call.answer(200, {}, body({"connections": [], "next_cursor": 3}), NOW)


@pytest.mark.parametrize(
    ("after", "limit", "wait", "types", "params"),
    [
        (None, None, 0, None, {}),
        ("0", 10, 0, None, {"after": "0", "limit": "10"}),
        ("1712-0/3", None, 2.5, ["a.b", "c.d"], {"after": "1712-0/3", "wait": "2.5",
                                                   "types": "a.b,c.d"}),
        (None, None, 30, "connection.authorized", {"wait": "30",
                                                   "types": "connection.authorized"}),
    ],
)  # fmt: skip
def test_an_events_call_sends_what_it_was_given(
    after: str | None, limit: int | None, wait: float, types: object, params: dict[str, str]
) -> None:
    call = calls.events(after, limit, wait, types)  # type: ignore[arg-type]
    assert (call.method, call.path, dict(call.params)) == ("GET", "/api/events", params)
    assert call.holds == wait  # the read timeout waits as long again


def test_an_events_page_is_read_oldest_first_with_where_to_resume() -> None:
    page = {"events": [
        {"id": "1-0/0", "type": "connection.authorized", "occurred_at": "2027-01-15T14:05:00Z",
         "data": {"integration": "g", "connection_id": "u"}},
        {"id": "2-0/1", "type": "connection.deleted", "occurred_at": "2027-01-15T14:06:00.5Z",
         "data": {"integration": "g", "connection_id": "u", "revoked": True}},
    ], "next_after": "3-0/1"}  # fmt: skip
    read = calls.events(None, None, 0, None).answer(200, {}, body(page), NOW)
    assert isinstance(read, EventPage) and read.next_after == "3-0/1"
    assert [(e.id, e.type, e.integration, e.connection_id) for e in read.events] == [
        ("1-0/0", "connection.authorized", "g", "u"),
        ("2-0/1", "connection.deleted", "g", "u"),
    ]


def test_a_negative_wait_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(UsageError, match="wait"):
        calls.events(None, None, -1, None)
