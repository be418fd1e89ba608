"""SchedulePolicy.next_check: resolved integrations and token sets to a due time."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from tokenlife.core.integration import Integration
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset
from tokenlife.core.refresh_timing import RefreshTiming
from tokenlife.core.tokens import TokenSet
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.services.scheduling import SchedulePolicy

NOW = 1_700_000_000.0
DAY = float(SECONDS_PER_DAY)
HOUR = 3600.0
WEEK = 7 * DAY
LEADS = (WEEK, DAY)
SEED = 20240601
JITTER = random.Random(SEED).random()  # the first draw of the policy's seeded source
WIDE = 1 + 0.1 * JITTER  # how much that draw widens a margin with the default 10 % jitter


def integration(
    provider: str,
    default_timing: RefreshTiming = RefreshTiming(),  # noqa: B008 - frozen value object
    *,
    preset: Preset | None = None,
    **config: Any,
) -> Integration:
    custom = provider == "custom"
    settings = IntegrationConfig(
        provider=provider,
        client_id="client-id",
        client_secret="client-secret",
        redirect_uri="https://app.example.com/callback",
        authorize_url="https://id.example.com/authorize" if custom else None,
        token_url="https://id.example.com/token" if custom else None,
        **config,
    )
    return resolve(
        "crm",
        settings,
        preset or load_presets()[provider],
        "client-secret",
        30.0,
        default_timing=default_timing,
    )


def token_set(refresh_token: bool, lifetime: float | None) -> TokenSet:
    return TokenSet(
        access_token="access",
        token_type="Bearer",
        refresh_token="refresh" if refresh_token else None,
        expires_at=None if lifetime is None else NOW + lifetime,
        lifetime_seconds=None if lifetime is None else int(lifetime),
        lifetime_source=None if lifetime is None else "expires_in",
        granted_scopes=None,
    )


def policy(leads: tuple[float, ...] = LEADS) -> SchedulePolicy:
    return SchedulePolicy(expiry_lead_seconds=leads, rng=random.Random(SEED))


def preset_with(provider: str, **fields: Any) -> Preset:
    return replace(load_presets()[provider], **fields)


SETTINGS = RefreshTiming(min_margin_seconds=900, margin_fraction=0.1)  # as if from settings


@pytest.mark.parametrize(
    ("configured", "lifetime", "last_refreshed_at", "expected"),
    [
        # Ahead of expiry by max(300 s, 20 %) widened by the seeded jitter, at most half.
        pytest.param(integration("custom"), 3600, None, NOW + 3600 - 720 * WIDE, id="custom-1h"),
        pytest.param(integration("custom"), 1200, None, NOW + 1200 - 300 * WIDE, id="custom-20m"),
        # At half the lifetime already: the jitter narrows the margin instead.
        pytest.param(
            integration("custom"), 600, None, NOW + 600 - 300 * (2 - WIDE), id="custom-10min-half"
        ),
        pytest.param(
            integration("custom"), 300, None, NOW + 300 - 150 * (2 - WIDE), id="custom-5min-half"
        ),
        pytest.param(
            integration("custom"), 30 * DAY, None, NOW + 30 * DAY - 6 * DAY * WIDE, id="custom-30d"
        ),
        pytest.param(
            integration("custom"), None, None, NOW + 3600, id="custom-unknown-lifetime-hourly"
        ),
        # Google: a 180-day idle limit, so a keep-alive 90 days after the last refresh.
        pytest.param(integration("google"), 3599, None, NOW + 3599 - 719.8 * WIDE, id="google-1h"),
        pytest.param(
            integration("google"),
            100 * DAY,
            None,
            NOW + 100 * DAY - 20 * DAY * WIDE,
            id="google-100d-expiry-first",
        ),
        pytest.param(
            integration("google"), 200 * DAY, None, NOW + 90 * DAY, id="google-200d-keep-alive"
        ),
        pytest.param(
            integration("google"),
            200 * DAY,
            NOW - 80 * DAY,
            NOW + 10 * DAY,
            id="google-keep-alive-from-last-refresh",
        ),
        pytest.param(
            integration("google"), 3599, NOW - 179 * DAY, NOW, id="google-keep-alive-overdue"
        ),
        pytest.param(integration("google"), None, None, NOW + 3600, id="google-no-expiry-hourly"),
        # Microsoft: a 90-day idle limit, so a keep-alive after 45 days.
        pytest.param(
            integration("microsoft"), 4500, None, NOW + 4500 - 900 * WIDE, id="microsoft-75min"
        ),
        pytest.param(
            integration("microsoft"),
            100 * DAY,
            None,
            NOW + 45 * DAY,
            id="microsoft-100d-keep-alive",
        ),
        pytest.param(
            integration("microsoft"), None, NOW - 600, NOW + 3000, id="microsoft-no-expiry-hourly"
        ),
        # Integration overrides win over the preset, which wins over the settings' defaults.
        pytest.param(
            integration("custom", SETTINGS), 3600, None, NOW + 3600 - 900 * WIDE, id="settings"
        ),
        pytest.param(
            integration("custom", SETTINGS, refresh_margin_seconds=120),
            3600,
            None,
            NOW + 3600 - 360 * WIDE,
            id="integration-seconds",
        ),
        pytest.param(
            integration("custom", SETTINGS, refresh_margin_fraction=0.4),
            3600,
            None,
            NOW + 3600 - 1440 * WIDE,
            id="integration-fraction",
        ),
        pytest.param(
            integration(
                "custom", SETTINGS, refresh_margin_seconds=60, refresh_margin_fraction=0.05
            ),
            3600,
            None,
            NOW + 3600 - 180 * WIDE,
            id="integration-both",
        ),
        pytest.param(
            integration("custom", SETTINGS, refresh_margin_seconds=1, refresh_margin_fraction=0),
            3600,
            None,
            NOW + 3600 - 1 * WIDE,
            id="integration-small-is-an-override",
        ),
        pytest.param(
            integration(
                "custom", SETTINGS, preset=preset_with("custom", refresh_margin_seconds=1500)
            ),
            3600,
            None,
            NOW + 3600 - 1500 * WIDE,
            id="preset-over-settings",
        ),
        pytest.param(
            integration(
                "custom",
                SETTINGS,
                preset=preset_with(
                    "custom", refresh_margin_seconds=1500, refresh_margin_fraction=0.3
                ),
                refresh_margin_seconds=600,
            ),
            3600,
            None,
            NOW + 3600 - 1080 * WIDE,
            id="integration-over-preset",
        ),
        pytest.param(
            integration("custom", RefreshTiming(jitter_fraction=0.0)),
            3600,
            None,
            NOW + 2880,
            id="settings-jitter-off",
        ),
        pytest.param(
            integration("google", SETTINGS, refresh_margin_fraction=0.5),
            100 * DAY,
            None,
            NOW + 100 * DAY - 50 * DAY * (2 - WIDE),  # capped: the jitter narrows
            id="google-override-half-cap",
        ),
    ],
)
def test_refreshable(
    configured: Integration,
    lifetime: float | None,
    last_refreshed_at: float | None,
    expected: float | None,
) -> None:
    due = policy().next_check(
        configured,
        token_set(True, lifetime),
        NOW,
        sent=(),
        last_refreshed_at=last_refreshed_at,
    )
    if expected is None:
        assert due is None
    else:
        assert due == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("provider", "config", "default_timing", "expected"),
    [
        pytest.param("custom", {}, RefreshTiming(), RefreshTiming(), id="custom-defaults"),
        pytest.param(
            "google",
            {},
            RefreshTiming(),
            RefreshTiming(refresh_token_idle_seconds=180 * DAY),
            id="google-idle-180d",
        ),
        pytest.param(
            "microsoft",
            {},
            RefreshTiming(),
            RefreshTiming(refresh_token_idle_seconds=90 * DAY),
            id="microsoft-idle-90d",
        ),
        pytest.param(
            "custom",
            {},
            RefreshTiming(min_margin_seconds=900, margin_fraction=0.1, jitter_fraction=0.3),
            RefreshTiming(min_margin_seconds=900, margin_fraction=0.1, jitter_fraction=0.3),
            id="settings",
        ),
        pytest.param(
            "microsoft",
            {"refresh_margin_seconds": 60, "refresh_margin_fraction": 0.5},
            RefreshTiming(min_margin_seconds=900, margin_fraction=0.1, jitter_fraction=0.3),
            RefreshTiming(
                min_margin_seconds=60,
                margin_fraction=0.5,
                jitter_fraction=0.3,
                refresh_token_idle_seconds=90 * DAY,
            ),
            id="integration-overrides",
        ),
    ],
)
def test_resolved_timing(
    provider: str, config: dict[str, Any], default_timing: RefreshTiming, expected: RefreshTiming
) -> None:
    assert integration(provider, default_timing, **config).refresh_timing == expected


@pytest.mark.parametrize("lifetime", [300, 3600, 30 * DAY])
def test_seeded_jitter_is_repeatable_and_bounded(lifetime: float) -> None:
    configured = integration("custom")
    first = policy().next_check(configured, token_set(True, lifetime), NOW, sent=())
    again = policy().next_check(configured, token_set(True, lifetime), NOW, sent=())
    assert first is not None and first == again
    margin = NOW + lifetime - first
    base = max(300.0, 0.2 * lifetime)
    assert min(base, lifetime / 2) * 0.9 <= margin <= min(base * 1.1, lifetime / 2)


@pytest.mark.parametrize(
    ("provider", "lifetime", "now", "sent", "leads", "expected"),
    [
        # No refresh token: the next expiry alert, then the expiry itself.
        pytest.param("custom", 30 * DAY, NOW, (), LEADS, NOW + 23 * DAY, id="30d-at-issue"),
        pytest.param(
            "custom", 30 * DAY, NOW + 23 * DAY, (WEEK,), LEADS, NOW + 29 * DAY, id="30d-7d-sent"
        ),
        pytest.param(
            "custom", 30 * DAY, NOW + 29 * DAY, (WEEK, DAY), LEADS, NOW + 30 * DAY, id="all-sent"
        ),
        pytest.param("custom", 30 * DAY, NOW, (), (), NOW + 30 * DAY, id="no-leads-expiry"),
        # Arriving inside a lead time: the alert for it is due at once.
        pytest.param("custom", 3 * DAY, NOW, (), LEADS, NOW, id="3d-token-alert-now"),
        pytest.param("custom", 2 * HOUR, NOW, (), LEADS, NOW, id="2h-token-alert-now"),
        pytest.param(
            "custom", 2 * HOUR, NOW, (WEEK, DAY), LEADS, NOW + 2 * HOUR, id="2h-token-all-sent"
        ),
        # The preset's keep-alive needs a refresh token; without one it plays no part.
        pytest.param("google", 200 * DAY, NOW, (), LEADS, NOW + 193 * DAY, id="google-no-rt"),
        pytest.param("microsoft", 30 * DAY, NOW, (), LEADS, NOW + 23 * DAY, id="microsoft-no-rt"),
        # Neither a refresh token nor an expiry: nothing to schedule.
        pytest.param("custom", None, NOW, (), LEADS, None, id="no-expiry"),
        pytest.param("google", None, NOW, (), LEADS, None, id="google-no-expiry"),
    ],
)
def test_without_refresh_token(
    provider: str,
    lifetime: float | None,
    now: float,
    sent: tuple[float, ...],
    leads: tuple[float, ...],
    expected: float | None,
) -> None:
    due = policy(leads).next_check(
        integration(provider), token_set(False, lifetime), now, sent=sent
    )
    if expected is None:
        assert due is None
    else:
        assert due == pytest.approx(expected, abs=1e-6)
