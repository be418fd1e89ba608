"""What a failed refresh writes and says, from the catalogue's facts: the alert for a
refresh whose outcome is unknown, the failure time pull-forward reads, and the wording of
a provider's reuse grace (0 is documented, not missing)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tokenlife.adapters.connection_record import Connection
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.refresh_timing import RetryPolicy
from tokenlife.core.secret_expiry import SECRET_EXPIRED_RETRY_SECONDS
from tokenlife.errors import EndpointTimeoutError, OAuthError, RateLimitedError, ServerError
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.services.refresh_failure import FailureBookkeeping
from tokenlife.services.token_loss import grace_wording, lost_token_alert

NOW = 1_700_000_000.0


def integration(provider: str, **placeholders: str) -> Integration:
    config = IntegrationConfig(
        provider=provider, client_id="client-id", client_secret="client-secret",
        redirect_uri="https://app.example.com/callback", placeholders=placeholders,
    )  # fmt: skip
    return resolve("crm", config, load_presets()[provider], "client-secret", 30.0)


def auth0() -> Integration:
    return integration("auth0", domain="example.us.auth0.com")


def connection(provider: str, expires_in: float = 1800.0, **changes: object) -> Connection:
    stored = Connection(
        integration="crm", connection_id="user-1", provider=provider, status=Status.ACTIVE,
        verdict=Verdict.REFRESHABLE, token_type="Bearer", expires_at=NOW + expires_in,
        lifetime_seconds=3600, lifetime_source="expires_in", scopes_requested=("openid",),
        scopes_granted=("openid",), has_refresh_token=True, created_at=NOW - 3600,
        updated_at=NOW - 60, version=3,
    )  # fmt: skip
    return replace(stored, **changes)  # type: ignore[arg-type]


def bookkeeping() -> FailureBookkeeping:
    return FailureBookkeeping(RetryPolicy(base_seconds=300.0), random.Random(1))


def timed_out() -> EndpointTimeoutError:
    return EndpointTimeoutError("the provider did not answer within 1 s")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "no reuse grace is documented for this provider"),
        (0, "no grace: the provider revokes the family when an old refresh token is reused"),
        (600, "the provider documents a reuse grace of 600 s for the old one"),
    ],
)
def test_grace_wording(seconds: int | None, expected: str) -> None:
    assert grace_wording(seconds) == expected


def test_auth0s_documented_grace_of_zero_is_not_reported_as_undocumented() -> None:
    alert = lost_token_alert(auth0(), connection("auth0"), NOW, rotated=True)

    assert alert.data["reuse_grace_seconds"] == 0
    assert "no reuse grace is documented" not in alert.data["error_description"]
    assert "revokes the family" in alert.data["error_description"]


def test_an_unknown_outcome_where_no_grace_is_documented_alerts_at_once() -> None:
    """Auth0 without an overlap period: the prompt retry itself may burn the family."""
    plan = bookkeeping().plan(auth0(), connection("auth0"), timed_out(), NOW, request_sent=True)

    assert plan.outcome_unknown
    assert plan.alert is not None
    assert plan.alert.data["refresh_token_may_have_rotated"] is True
    assert "may have rotated" in plan.alert.data["error_description"]
    assert plan.fields["refresh_failing_alerted"] == "1"
    assert plan.due - NOW <= 5.0  # retried promptly all the same


def test_an_unknown_outcome_inside_a_grace_alerts_only_when_the_prompt_retry_fails_too() -> None:
    atlassian = integration("atlassian")
    first = bookkeeping().plan(
        atlassian, connection("atlassian"), timed_out(), NOW, request_sent=True
    )
    assert first.outcome_unknown and first.alert is None
    assert first.due - NOW <= 5.0
    assert first.fields["outcome_unknown_at"] == repr(NOW)

    # The prompt retry fails as well (any transient error): now say so.
    retried = connection(
        "atlassian", consecutive_failures=1, failing_since=NOW, outcome_unknown_at=NOW
    )
    second = bookkeeping().plan(atlassian, retried, ServerError(502), NOW + 3, request_sent=False)
    assert second.alert is not None
    assert second.alert.data["refresh_token_may_have_rotated"] is True
    assert "outcome_unknown_at" not in second.fields  # the first one of the stretch stays

    # Once a stretch: an alerted connection gets no second alert.
    alerted = replace(retried, refresh_failing_alerted=True)
    third = bookkeeping().plan(atlassian, alerted, ServerError(502), NOW + 3, request_sent=False)
    assert third.alert is None


def test_a_plain_failure_before_the_token_lapses_does_not_alert() -> None:
    plan = bookkeeping().plan(
        auth0(), connection("auth0"), ServerError(503), NOW, request_sent=False
    )
    assert plan.alert is None and not plan.outcome_unknown
    assert "outcome_unknown_at" not in plan.fields


def test_a_failure_records_when_it_happened_for_pull_forward() -> None:
    """Not updated_at, which any later write (a rotation-conflict mark) changes."""
    plan = bookkeeping().plan(
        auth0(), connection("auth0"), ServerError(503), NOW, request_sent=False
    )
    assert plan.fields["last_failed_at"] == repr(NOW)


def test_a_refusal_for_an_expired_secret_waits_long_and_names_the_secret() -> None:
    """A lapsed token refused for an expired client secret: degraded with the secret as the
    reason (not refresh_failing), no per-connection alert, and a retry hours out that no
    recovery of another connection pulls in (retry_not_before)."""
    microsoft = integration("microsoft", tenant="common")
    expired = OAuthError(
        "AADSTS7000222: The provided client secret keys for app 'x' are expired.",
        error="invalid_client",
    )
    lapsed = connection("microsoft", expires_in=-60.0, consecutive_failures=3)
    plan = bookkeeping().plan(microsoft, lapsed, expired, NOW, request_sent=False)
    assert plan.fields["status"] == "degraded"
    assert plan.fields["status_reason"] == "client_secret_expired"
    assert plan.alert is None
    assert plan.due == NOW + SECRET_EXPIRED_RETRY_SECONDS
    assert float(plan.fields["retry_not_before"]) == plan.due
    # Degraded earlier for another failure: the reason follows the latest refusal.
    earlier = replace(lapsed, status=Status.DEGRADED, status_reason="refresh_failing")
    again = bookkeeping().plan(microsoft, earlier, expired, NOW, request_sent=False)
    assert again.fields["status_reason"] == "client_secret_expired"
    # Any other failure of a lapsed token is refresh_failing, retried at the usual pace.
    other = bookkeeping().plan(microsoft, lapsed, ServerError(502), NOW, request_sent=False)
    assert other.fields["status_reason"] == "refresh_failing"
    assert "retry_not_before" not in other.fields and other.due < NOW + 3600
    # A token that still works: active, and tried once more when it lapses (that refusal
    # writes the degraded status), not hours after.
    working = connection("microsoft", expires_in=1800.0)
    held = bookkeeping().plan(microsoft, working, expired, NOW, request_sent=False)
    assert "status" not in held.fields and held.due == NOW + 1800.0


def test_a_retry_after_holds_the_next_retry_and_a_later_failure_without_one_ends_it() -> None:
    limited = bookkeeping().plan(
        integration("google"), connection("google"), RateLimitedError(120.0), NOW,
        request_sent=False,
    )  # fmt: skip
    assert limited.fields["retry_not_before"] == repr(NOW + 120.0)
    assert limited.fields["retry_held_by"] == "retry_after"
    assert limited.cleared == ()
    # The next failure says nothing of when to come back: the old hold ends with it.
    later = bookkeeping().plan(
        integration("google"), connection("google", consecutive_failures=1), ServerError(503),
        NOW + 130, request_sent=False,
    )  # fmt: skip
    assert "retry_not_before" not in later.fields
    assert set(later.cleared) == {"retry_not_before", "retry_held_by"}
