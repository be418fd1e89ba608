"""Client secrets that expire, pure: the integrations file's date, which warning is due at
`now`, which refusal names an expired secret, the preflight finding, and the alerts'
severity, title and resolution."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from tokenlife.core import events
from tokenlife.core.integration import Integration
from tokenlife.core.notifications import CLEARS, SEVERITY, Alert, Notification, render
from tokenlife.core.preflight import check_integration
from tokenlife.core.secret_expiry import (
    LEAD_DAYS,
    due_lead,
    names_expired_secret,
    preflight_state,
    rotation_steps,
    to_epoch,
)
from tokenlife.errors import ConfigurationError
from tokenlife.integrations import IntegrationConfig, resolve, validate_table
from tokenlife.providers import load_presets

DAY = 86400.0
EXPIRES = datetime(2027, 6, 30, tzinfo=UTC).timestamp()
PRESETS = load_presets()


def integration(provider: str = "microsoft", **table: Any) -> Integration:
    config = IntegrationConfig(
        provider=provider, client_id="client", client_secret="secret",
        redirect_uri="https://app.example.com/oauth/callback", **table,
    )  # fmt: skip
    return resolve("crm", config, PRESETS[provider], "secret", 30.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2027, 6, 30), EXPIRES),  # a TOML date: its start, UTC
        (datetime(2027, 6, 30, 12, 0, tzinfo=UTC), EXPIRES + DAY / 2),
        (datetime(2027, 6, 30, 12, 0), EXPIRES + DAY / 2),  # naive: UTC
        (int(EXPIRES), EXPIRES),  # RFC 7591 epoch seconds
        (0, None),  # RFC 7591: 0 means it never expires
        (None, None),
    ],
)
def test_the_configured_expiry_as_epoch_seconds(value: Any, expected: float | None) -> None:
    assert to_epoch(value) == expected


def test_the_integrations_file_takes_a_toml_date_and_resolves_it() -> None:
    table = {"provider": "microsoft", "client_id": "c", "client_secret": "s",
             "redirect_uri": "https://app.example.com/cb",
             "client_secret_expires_at": date(2027, 6, 30)}  # fmt: skip
    config = validate_table("crm", table, PRESETS, "here")
    resolved = resolve("crm", config, PRESETS["microsoft"], "s", 30.0)
    assert resolved.client_secret_expires_at == EXPIRES
    assert integration().client_secret_expires_at is None  # unset: nothing to warn about


@pytest.mark.parametrize("bad", [-1, "next year", True])
def test_a_malformed_expiry_is_a_configuration_error(bad: Any) -> None:
    table = {"provider": "microsoft", "client_id": "c", "client_secret": "s",
             "redirect_uri": "https://app.example.com/cb",
             "client_secret_expires_at": bad}  # fmt: skip
    with pytest.raises(ConfigurationError, match="client_secret_expires_at"):
        validate_table("crm", table, PRESETS, "here")


@pytest.mark.parametrize(
    ("days_left", "sent", "due"),
    [
        (45, (), None),  # before the first lead
        (30, (), 30),  # exactly at it
        (29.5, (), 30),
        (29.5, (30,), None),  # once each
        (7, (30,), 7),
        (6.9, (30, 7), None),
        (3, (), 7),  # the worker was down at 30 days: only the nearest lead, not both
        (1, (30, 7), 1),
        (0.5, (30,), 1),  # down across the 7-day lead: the 1-day one
        (0.5, (30, 7, 1), None),
        (0, (), None),  # expired: alert.client_secret_expired takes over
        (-3, (), None),
        (20, (7,), None),  # a nearer lead went out (the date moved back): nothing louder
    ],
)
def test_which_warning_is_due(days_left: float, sent: tuple[int, ...], due: int | None) -> None:
    now = EXPIRES - days_left * DAY
    assert due_lead(EXPIRES, now, sent) == due


def test_the_leads_are_a_month_a_week_and_a_day() -> None:
    assert LEAD_DAYS == (30, 7, 1)


@pytest.mark.parametrize(
    ("error", "description", "expired"),
    [
        ("invalid_client", "AADSTS7000222: The client secret keys for app 'x' are expired.", True),
        # A wrong secret (its ID copied instead of its value) is no expiry.
        ("invalid_client", "AADSTS7000215: Invalid client secret provided.", False),
        ("invalid_client", "The client secret has expired", True),
        ("invalid_client", "client_secret expired on 2027-06-30", True),
        ("invalid_client", "Client authentication failed.", False),
        ("invalid_client", None, False),
        ("invalid_grant", "AADSTS7000222", False),  # the code names the grant, not the client
        ("invalid_client", "AADSTS70002220: something else", False),
        # Words near "expired" that do not say the secret expired.
        ("invalid_client", "The client secret has not expired; it is invalid", False),
        ("invalid_client", "Client secret is correct but the client certificate expired", False),
        ("invalid_client", "client secret JWT assertion expired", False),
        ("invalid_client", "Client secret is expired.", True),
    ],
)
def test_which_refusal_names_an_expired_secret(
    error: str, description: str | None, expired: bool
) -> None:
    assert names_expired_secret(error, description) is expired


@pytest.mark.parametrize(
    ("days_left", "state"), [(None, "ok"), (31, "ok"), (30, "expiring"), (0.1, "expiring"),
                             (0, "expired"), (-1, "expired")],
)  # fmt: skip
def test_the_preflight_state(days_left: float | None, state: str) -> None:
    expires = None if days_left is None else EXPIRES
    now = EXPIRES - (days_left or 0) * DAY
    assert preflight_state(expires, now) == state


def test_preflight_warns_within_30_days_and_errs_after_the_date() -> None:
    dated = integration(client_secret_expires_at=date(2027, 6, 30))
    soon = check_integration(dated, PRESETS, now=EXPIRES - 10 * DAY)
    past = check_integration(dated, PRESETS, now=EXPIRES + 1)
    later = check_integration(dated, PRESETS, now=EXPIRES - 60 * DAY)
    assert [(f.severity, f.code) for f in soon] == [("warning", "client_secret_expiring")]
    assert "2027-06-30 00:00 UTC, in 10.0 days" in soon[0].message
    assert [(f.severity, f.code) for f in past] == [("error", "client_secret_expired")]
    assert later == [] and check_integration(dated, PRESETS) == []  # no `now`: not checked
    # The fix is the catalogue's rotation steps, with their source.
    assert "Certificates & secrets" in past[0].fix
    assert past[0].source is not None and past[0].source.startswith("https://learn.microsoft.com")


def test_rotation_steps_come_from_the_catalogue_else_generic_steps() -> None:
    steps, source = rotation_steps(integration())
    assert "24 months" in steps and source is not None
    okta_steps, okta_source = rotation_steps(integration("okta", placeholders={"domain": "a.b"}))
    assert "Okta" in okta_steps and okta_source is not None
    google_steps, google_source = rotation_steps(integration("google"))
    assert "Add secret" in google_steps and google_source is not None
    generic, none = rotation_steps(integration("github"))
    assert "client_secret_expires_at" in generic and none is None
    assert PRESETS["microsoft"].facts.as_dict()["client_secret_rotation"] == steps


def test_the_alerts_are_about_the_integration_and_cleared_when_the_secret_works() -> None:
    assert SEVERITY[events.CLIENT_SECRET_EXPIRED] == "critical"
    assert SEVERITY[events.CLIENT_SECRET_EXPIRING] == "warning"
    assert set(CLEARS[events.CLIENT_SECRET_ACCEPTED]) == {
        events.CLIENT_SECRET_EXPIRED, events.CLIENT_SECRET_EXPIRING,
    }  # fmt: skip
    data = {"integration": "crm", "connection_id": None, "provider": "microsoft",
            "message": "The provider refuses the integration's client secret.",
            "error": "invalid_client", "error_description": "AADSTS7000222: expired",
            "fix": "Make a new secret."}  # fmt: skip
    alert = Alert("1-0", events.CLIENT_SECRET_EXPIRED, data)
    accepted = Alert("2-0", events.CLIENT_SECRET_ACCEPTED, {"integration": "crm",
                                                            "connection_id": None})  # fmt: skip
    # One dedup key per integration, the one the resolving event looks for.
    assert alert.dedup_key() == accepted.dedup_key(events.CLIENT_SECRET_EXPIRED)
    title, body = render(Notification("ops", "alert", alert.type, "crm", (alert,)), "", 0.0)
    assert title == "[tokenlife] crm: client secret expired (all connections)"
    assert "1. Make a new secret." in body
    assert "Last error: invalid_client (AADSTS7000222: expired)" in body
    assert "#client-secret-expired of docs/troubleshooting.md" in body


def test_the_expired_finding_allows_for_a_stale_date() -> None:
    dated = integration(client_secret_expires_at=date(2027, 6, 30))
    [past] = check_integration(dated, PRESETS, now=EXPIRES + 1)
    assert "will refuse" in past.message
    assert "unless the secret was rotated and client_secret_expires_at is stale" in past.message
