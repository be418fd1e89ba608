"""alert.exchange_failed as on-call reads it: its severity from the diagnosis, one
notification per integration and cause, and a message that says what to change."""

from __future__ import annotations

from typing import Any

from tokenlife.core import events
from tokenlife.core.authorization_errors import Refusal, diagnose_refusal
from tokenlife.core.notifications import Alert, Notification, group, render

DOCS = "https://docs.example/troubleshooting.md"


def alert(connection_id: str, refusal: Refusal, entry: str = "1-0") -> Alert:
    diagnosis = diagnose_refusal(refusal)
    data: dict[str, Any] = {
        "event_id": entry, "integration": "crm", "connection_id": connection_id,
        "provider": "custom", "message": f"Connecting an account failed: "
        f"{diagnosis.causes[0].cause}", "cause": diagnosis.key, "severity": diagnosis.severity,
        "error": refusal.error, "error_description": refusal.description, "attempts": 1,
        "requested": {"scopes": ["openid"], "params": {"prompt": refusal.prompt or ""}},
        "diagnosis": diagnosis.as_list(),
    }  # fmt: skip
    return Alert(entry, events.EXCHANGE_FAILED_ALERT, data)


PROMPT = Refusal("invalid_request", "unsupported prompt value requested", prompt="select_account")
DENIED = Refusal("access_denied", "The user denied access")


def test_severity_comes_from_the_diagnosis() -> None:
    assert alert("u1", PROMPT).severity == "critical"
    assert alert("u1", DENIED).severity == "info"


def test_one_notification_per_integration_and_cause() -> None:
    a, b, c = alert("u1", PROMPT, "1-0"), alert("u2", PROMPT, "2-0"), alert("u3", DENIED, "3-0")
    assert a.dedup_key() == b.dedup_key() != c.dedup_key()
    grouped = group([("hook", "alert", a), ("hook", "alert", b), ("hook", "alert", c)])
    assert sorted(len(n.alerts) for n in grouped) == [1, 2]


def test_the_message_says_what_was_sent_what_came_back_and_the_fix() -> None:
    notification = Notification("hook", "alert", events.EXCHANGE_FAILED_ALERT, "crm",
                                (alert("u1", PROMPT),))  # fmt: skip
    title, body = render(notification, DOCS, now=0.0)
    assert title == "[tokenlife] crm: connecting an account failed (u1)"
    assert "Connecting an account failed: The provider refused the prompt value" in body
    assert "Requested: scopes openid; prompt=select_account" in body
    assert "Last error: invalid_request (unsupported prompt value requested)" in body
    assert '1. Send prompt=consent: set extra_authorization_params.prompt = "consent"' in body
    assert body.endswith(f"More: {DOCS}#a-connect-that-ended-in-exchangefailed")
