"""The typed answers read from the API's JSON (tokenlife.models): what they keep, what
they ignore, and that their errors name a member, never its value (a token answer holds
a token)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tokenlife.models import (
    AccessToken,
    Connection,
    ConnectSession,
    Deletion,
    Event,
    EventPage,
    ExchangeResult,
    Integration,
    Readiness,
)

SECRET = "ya29.secret-token-value"

CONNECTION: dict[str, Any] = {
    "integration": "google", "connection_id": "user-42", "provider": "google",
    "status": "degraded", "status_reason": "refresh_failing", "verdict": "refreshable",
    "token_type": "Bearer", "expires_at": "2027-01-15T14:05:00Z",
    "access_token_lifetime_seconds": 3599, "lifetime_source": "expires_in",
    "scopes_requested": ["openid", "email"], "scopes_granted": None,
    "has_refresh_token": True, "created_at": "2027-01-01T00:00:00Z",
    "updated_at": "2027-01-15T13:05:00.25Z", "version": 3, "next_refresh_at": None,
    "last_refreshed_at": None, "consecutive_failures": 2,
    "failing_since": "2027-01-15T13:00:00Z", "last_error": "server_error",
    "last_alert": {"type": "alert.refresh_failing", "fixes": []}, "subject": None,
}  # fmt: skip


def test_a_connection_is_read_with_its_times_as_aware_datetimes() -> None:
    connection = Connection.from_json({**CONNECTION, "a_member_of_a_newer_server": 1})
    assert connection.expires_at == datetime(2027, 1, 15, 14, 5, tzinfo=UTC)
    assert connection.updated_at == datetime(2027, 1, 15, 13, 5, 0, 250000, tzinfo=UTC)
    assert connection.scopes_requested == ("openid", "email")
    assert connection.scopes_granted is None and connection.next_refresh_at is None
    assert connection.last_alert is not None and connection.last_alert["fixes"] == []
    assert not connection.needs_reauthorization
    with pytest.raises(TypeError):  # read-only: a result, not a record to edit
        connection.last_alert["type"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    ("member", "value", "message"),
    [
        ("status", None, "status is missing or not a string"),
        ("version", "3", "version is missing or not an integer"),
        ("version", True, "version is missing or not an integer"),
        ("has_refresh_token", 1, "has_refresh_token is missing or not a boolean"),
        ("expires_at", "2027-01-15T14:05:00", "expires_at has no time zone"),
        ("expires_at", "tomorrow", "expires_at is not an ISO 8601 timestamp"),
        ("scopes_requested", "openid", "scopes_requested is missing or not a list of strings"),
        ("last_alert", [], "last_alert is not an object"),
    ],
)
def test_a_mistyped_member_is_named(member: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Connection.from_json({**CONNECTION, member: value})


def test_an_access_token_keeps_its_value_out_of_repr_and_errors() -> None:
    token = AccessToken.from_json(
        {"access_token": SECRET, "token_type": "Bearer", "expires_at": "2027-01-15T14:05:00Z"}
    )
    assert token.expires_at == datetime(2027, 1, 15, 14, 5, tzinfo=UTC).timestamp()
    assert SECRET not in repr(token)
    assert (
        AccessToken.from_json({"access_token": SECRET, "token_type": "Bearer"}).expires_at is None
    )
    with pytest.raises(ValueError) as raised:
        AccessToken.from_json(
            {"access_token": SECRET, "token_type": "Bearer", "expires_at": SECRET}
        )
    assert SECRET not in str(raised.value)


def test_a_connect_session_keeps_its_token_and_url_out_of_repr() -> None:
    session = ConnectSession.from_json({"token": SECRET, "url": f"https://t/connect/g?session={SECRET}",
                                        "expires_at": "2027-01-15T14:05:00Z"})  # fmt: skip
    assert SECRET not in repr(session) and session.token == SECRET


def test_integrations_deletions_and_readiness() -> None:
    integration = Integration.from_json({"name": "g", "provider": "google", "scopes": ["a"]})
    assert integration == Integration("g", "google", ("a",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        integration.name = "h"  # type: ignore[misc]
    deletion = {"deleted": True, "revoked": False, "revocation_supported": False,
                "revocation_reason": "no endpoint", "revocation_error": None}  # fmt: skip
    assert Deletion.from_json(deletion).revocation_reason == "no endpoint"
    checks = {"ready": True, "redis": True, "beat": True, "beat_last_tick_seconds_ago": 2,
              "integrations_unavailable": []}  # fmt: skip
    assert Readiness.from_json(checks) == Readiness(True, True, True, 2.0, ())
    with pytest.raises(ValueError, match="beat_last_tick_seconds_ago"):
        Readiness.from_json({**checks, "beat_last_tick_seconds_ago": "2"})


def test_an_event_page_reads_every_event_and_where_to_resume() -> None:
    event = {"id": "1-0/2", "type": "token.refreshed", "occurred_at": "2027-01-15T14:05:00Z",
             "data": {"integration": "g", "connection_id": "u", "version": 4}}  # fmt: skip
    page = EventPage.from_json({"events": [event], "next_after": "1-0/2"})
    assert page.events == (Event.from_json(event),)
    assert (page.events[0].integration, page.events[0].connection_id) == ("g", "u")
    assert not page.gap  # a server from before `gap`: none said
    trimmed = EventPage.from_json({"events": [], "next_after": "9-0/0", "gap": True})
    assert trimmed.events == () and trimmed.gap
    with pytest.raises(ValueError, match="gap is missing or not a boolean"):
        EventPage.from_json({"events": [], "next_after": "9-0/0", "gap": "yes"})
    with pytest.raises(ValueError, match="events is missing"):
        EventPage.from_json({"next_after": "1-0/2"})
    with pytest.raises(ValueError, match="data is not an object"):
        Event.from_json({**event, "data": None})
    without = Event.from_json({**event, "data": {"count": 3}})  # e.g. alert.provider_degraded
    assert without.integration is None and without.connection_id is None


EVENT = {
    "id": "1-0/2", "type": "alert.refresh_failing", "occurred_at": "2027-01-15T14:05:00Z",
    "data": {"integration": "g", "connection_id": "u", "fixes": ["a"], "n": {"m": 1}},
}  # fmt: skip
# One of each model, with every mapping a model holds filled in.
RESULTS: list[Any] = [
    AccessToken.from_json({"access_token": SECRET, "token_type": "Bearer", "expires_at": None}),
    ConnectSession.from_json(
        {
            "token": SECRET,
            "url": "https://t/connect?session=x",
            "expires_at": "2027-01-15T14:05:00Z",
        }
    ),
    Integration("g", "google", ("a",)),
    Connection.from_json(CONNECTION),
    Deletion(True, False, False, "no endpoint", None),
    Event.from_json(EVENT),
    EventPage.from_json({"events": [EVENT], "next_after": "1-0/2", "gap": True}),
    Readiness.from_json(
        {
            "ready": False,
            "redis": True,
            "beat": False,
            "beat_last_tick_seconds_ago": None,
            "integrations_unavailable": [{"name": "g", "error": "x"}],
        }
    ),
    ExchangeResult.from_json(
        {
            "outcome": "failed",
            "error": "invalid_grant",
            "diagnosis": [{"fix": "scope", "detail": ["x"]}],
        }
    ),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_every_result_pickles_copies_hashes_and_converts(result: Any) -> None:
    # Results go into Celery results, caches, multiprocessing and JSON answers.
    assert pickle.loads(pickle.dumps(result)) == result
    assert copy.deepcopy(result) == result and copy.copy(result) == result
    assert hash(copy.deepcopy(result)) == hash(result)
    plain = dataclasses.asdict(result)
    assert json.loads(json.dumps(plain, default=str)) == json.loads(json.dumps(plain, default=str))
    assert pickle.loads(pickle.dumps(plain)) == plain


def test_a_results_mappings_stay_read_only_after_a_copy() -> None:
    event = pickle.loads(pickle.dumps(Event.from_json(EVENT)))
    assert event.data == EVENT["data"] and isinstance(event.data, dict)
    changes: list[Callable[[Any], object]] = [
        lambda d: d.__setitem__("x", 1), lambda d: d.__delitem__("integration"),
        lambda d: d.update(x=1), lambda d: d.pop("n"), lambda d: d.setdefault("x", 1),
        lambda d: d.popitem(), lambda d: d.clear(),
    ]  # fmt: skip
    for change in changes:
        with pytest.raises(TypeError, match="read-only"):
            change(event.data)
    with pytest.raises(TypeError, match="read-only"):
        event.data |= {"x": 1}
    assert event.data == EVENT["data"]
    # Equal results hash equal whatever their values hold (lists here).
    assert hash(Event.from_json(EVENT)) == hash(Event.from_json(dict(EVENT)))
