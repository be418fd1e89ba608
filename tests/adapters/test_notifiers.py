"""What AppriseTarget hands Apprise: PagerDuty URLs carry the incident key, so a RESOLVED
notification resolves the incident its alert opened. Read back from Apprise's own plugin."""

from __future__ import annotations

import apprise
import pytest

from tokenlife.adapters.notifiers import with_incident

PAGERDUTY = "pagerduty://routingkey@apikey"


@pytest.mark.parametrize(
    ("url", "dedup", "action"),
    [
        (PAGERDUTY, "k1", "map"),
        (PAGERDUTY + "?region=eu", "k1", "map"),
        (PAGERDUTY + "?action=trigger", "k1", "trigger"),  # the operator's choice stays
        (PAGERDUTY + "?dedup=mine", "mine", "map"),
    ],
)
def test_pagerduty_gets_the_incident_key_and_resolves_on_success(
    url: str, dedup: str, action: str
) -> None:
    plugin = apprise.Apprise.instantiate(with_incident(url, {"incident_key": "k1"}))
    assert plugin is not None
    assert (plugin.dedup, plugin.action) == (dedup, action)  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["json://127.0.0.1/hook", "slack://a/b/c/#ops", PAGERDUTY])
def test_other_urls_and_payloads_without_a_key_are_left_alone(url: str) -> None:
    payload = {"incident_key": "k1"} if not url.startswith("pagerduty") else {}
    assert with_incident(url, payload) == url
