"""Why no refresh token came back: causes and fixes from the preset and what was sent."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from tokenlife.core.authorization import build_authorization_request
from tokenlife.core.diagnosis import Cause, detect_vendor, diagnose_missing_refresh_token
from tokenlife.core.integration import Integration
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

NOW = 1_700_000_000.0
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"
GRAPH = "https://graph.microsoft.com/User.Read"
MICROSOFT = "Microsoft identity platform"  # the preset's title


def integration(provider: str, **config: Any) -> Integration:
    settings = IntegrationConfig(
        provider=provider,
        client_id="client-id",
        client_secret="client-secret",
        redirect_uri="https://app.example.com/callback",
        **config,
    )
    return resolve("crm", settings, load_presets()[provider], "client-secret", 30.0)


def custom(authorize_url: str, token_url: str, **config: Any) -> Integration:
    return integration("custom", authorize_url=authorize_url, token_url=token_url, **config)


def diagnose(
    configured: Integration, granted: tuple[str, ...] | None, lifetime: int | None
) -> list[Cause]:
    # The parameters exactly as the authorization request recorded them.
    sent = build_authorization_request(configured, "user-1", "state", VERIFIER, NOW).pending.params
    return diagnose_missing_refresh_token(configured, load_presets(), sent, granted, lifetime)


class Expect(NamedTuple):
    fix_starts: str
    cause_has: str
    evidence_has: str


CONSENT = {"prompt": "consent"}

CASES = [
    pytest.param(
        custom(
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            scopes=["openid", "email"],
        ),
        None,
        3599,
        [
            Expect('Use provider "google"', "provider 'custom'", "accounts.google.com"),
            Expect("Send access_type=offline", "no access_type", "prompt=select_account"),
            Expect("Send prompt=consent", "prompt=select_account", "prompt=select_account"),
        ],
        id="custom-on-google-host",
    ),
    pytest.param(
        custom(
            "http://127.0.0.1:8085/o/oauth2/v2/auth",
            "http://127.0.0.1:8085/token",
            scopes=["openid", DRIVE],
        ),
        None,
        3599,
        [
            Expect('Use provider "google"', f"the requested scope {DRIVE}", DRIVE),
            Expect("Send access_type=offline", "no access_type", "scope=openid"),
            Expect("Send prompt=consent", "prompt=select_account", "prompt=select_account"),
        ],
        id="custom-with-google-scope-on-loopback",
    ),
    pytest.param(
        custom(
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
            scopes=["openid", GRAPH],
        ),
        ("openid", GRAPH),
        3600,
        [
            Expect('Use provider "microsoft"', "Microsoft", "login.microsoftonline.com"),
            Expect("Add offline_access", "offline_access scope wasn't requested", "openid"),
        ],
        id="custom-on-microsoft-host",
    ),
    pytest.param(
        custom(
            "http://127.0.0.1:9000/authorize",
            "http://127.0.0.1:9000/token",
            scopes=[GRAPH],
        ),
        None,
        3600,
        [
            Expect('Use provider "microsoft"', f"the requested scope {GRAPH}", GRAPH),
            Expect("Add offline_access", "offline_access scope wasn't requested", GRAPH),
        ],
        id="custom-with-graph-scope-on-loopback",
    ),
    pytest.param(
        custom(
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
            scopes=["openid", "profile"],
        ),
        None,
        3600,
        [
            Expect("Add offline_access", "offline_access scope wasn't requested", "openid"),
            Expect("Send prompt=consent", "prompt=select_account", "prompt=select_account"),
        ],
        id="generic-custom-without-offline-access",
    ),
    pytest.param(
        custom(
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
            scopes=["openid", "offline_access"],
            extra_authorization_params=CONSENT,
        ),
        ("openid",),
        3600,
        [
            Expect(
                "Ask the user to reconnect",
                "the user or an admin didn't grant offline access",
                "scope granted: openid",
            )
        ],
        id="generic-custom-offline-access-not-granted",
    ),
    pytest.param(
        custom(
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
            scopes=["offline_access"],
            extra_authorization_params=CONSENT,
        ),
        (),
        3600,
        [Expect("Ask the user to reconnect", "didn't grant", "scope granted: (empty)")],
        id="generic-custom-nothing-granted",
    ),
    pytest.param(
        custom(
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
            scopes=["openid", "offline_access"],
            extra_authorization_params=CONSENT,
        ),
        None,
        3600,
        [Expect("Check that the client registration", "Everything tokenlife knows", "0.04 days")],
        id="generic-custom-no-granted-scope-in-response",
    ),
    pytest.param(
        custom(
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
            scopes=["openid", "offline_access"],
            extra_authorization_params={"prompt": "login consent"},
        ),
        ("openid", "offline_access"),
        None,
        [Expect("Check that the client registration", "Everything tokenlife knows", "unknown")],
        id="generic-custom-all-met-prompt-list",
    ),
    pytest.param(
        integration("microsoft", scopes=["openid", GRAPH]),
        ("openid", GRAPH),  # Microsoft never echoes offline_access, granted or not
        3600,
        [Expect("Check that the client registration", "Microsoft identity platform", "0.04 days")],
        id="microsoft-offline-access-not-echoed",
    ),
    pytest.param(
        integration("google", scopes=["openid"], extra_authorization_params={"prompt": "none"}),
        ("openid",),
        3599,
        [Expect("Send prompt=consent", "carried prompt=none", "prompt=none")],
        id="google-prompt-none",
    ),
    pytest.param(
        integration(
            "google", scopes=["openid"], extra_authorization_params={"prompt": "select_account"}
        ),
        ("openid",),
        3599,
        [
            Expect(
                "Send prompt=consent (extra_authorization_params.prompt",
                "carried prompt=select_account",
                "parameters sent: scope=openid, access_type=offline, prompt=select_account",
            )
        ],
        id="google-prompt-select-account",
    ),
    pytest.param(
        integration(
            "google", scopes=["openid"], extra_authorization_params={"access_type": "online"}
        ),
        ("openid",),
        3599,
        [Expect("Send access_type=offline", "carried access_type=online", "access_type=online")],
        id="google-access-type-online",
    ),
    pytest.param(
        integration(
            "google",
            scopes=["openid"],
            extra_authorization_params={"prompt": "consent select_account"},
        ),
        ("openid",),
        86400 * 3,
        [Expect("Check that the client registration", "Google", "3.00 days")],
        id="google-all-met",
    ),
]


@pytest.mark.parametrize(("configured", "granted", "lifetime", "expected"), CASES)
def test_diagnose_missing_refresh_token(
    configured: Integration,
    granted: tuple[str, ...] | None,
    lifetime: int | None,
    expected: list[Expect],
) -> None:
    causes = diagnose(configured, granted, lifetime)
    assert len(causes) == len(expected), [c.fix for c in causes]
    for cause, expect in zip(causes, expected, strict=True):
        assert cause.cause and cause.fix and cause.evidence
        assert cause.fix.startswith(expect.fix_starts), cause.fix
        assert expect.cause_has in cause.cause, cause.cause
        assert expect.evidence_has in cause.evidence, cause.evidence
        assert cause.source is None or cause.source.startswith("https://")
        assert cause.as_dict() == {
            "cause": cause.cause,
            "fix": cause.fix,
            "evidence": cause.evidence,
            "source": cause.source,
        }


@pytest.mark.parametrize(
    ("configured", "granted"),
    [
        pytest.param(
            custom(
                "https://auth.example.com/authorize",
                "https://auth.example.com/token",
                scopes=["openid", "offline_access"],
                extra_authorization_params=CONSENT,
            ),
            ("openid",),
            id="custom-not-granted",
        ),
        pytest.param(integration("google", scopes=["openid"]), None, id="google-nothing-missing"),
    ],
)
def test_requirement_causes_cite_the_preset_source(
    configured: Integration, granted: tuple[str, ...] | None
) -> None:
    sources = {r.source for r in configured.preset.requires}
    for cause in diagnose(configured, granted, 3600):
        if cause.fix.startswith("Check that the client registration"):
            assert cause.source is None
        else:
            assert cause.source in sources


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        pytest.param(
            custom("https://accounts.google.com/o/oauth2/v2/auth", "https://idp.example.com/t"),
            ("google", "the endpoint host accounts.google.com belongs to Google"),
            id="google-authorize-host",
        ),
        pytest.param(
            custom("http://127.0.0.1:8080/auth", "https://oauth2.googleapis.com/token"),
            ("google", "the endpoint host oauth2.googleapis.com belongs to Google"),
            id="google-token-host",
        ),
        pytest.param(
            custom("https://LOGIN.MICROSOFTONLINE.COM/x/authorize", "https://idp.example.com/t"),
            (
                "microsoft",
                "the endpoint host login.microsoftonline.com belongs to " + MICROSOFT,
            ),
            id="microsoft-host-case-insensitive",
        ),
        pytest.param(
            custom("https://eu.login.microsoftonline.com/x/a", "https://eu.example.com/t"),
            (
                "microsoft",
                "the endpoint host eu.login.microsoftonline.com belongs to " + MICROSOFT,
            ),
            id="microsoft-subdomain",
        ),
        pytest.param(
            custom("http://127.0.0.1:1/a", "http://127.0.0.1:1/t", scopes=["openid", DRIVE]),
            ("google", f"the requested scope {DRIVE} belongs to Google"),
            id="google-scope",
        ),
        pytest.param(
            custom("https://notaccounts.google.com/a", "https://idp.example.com/t"),
            None,
            id="lookalike-host",
        ),
        pytest.param(
            custom("https://auth.example.com/a", "https://auth.example.com/t", scopes=["openid"]),
            None,
            id="generic",
        ),
        pytest.param(integration("google", scopes=[DRIVE]), None, id="not-custom"),
    ],
)
def test_detect_vendor(configured: Integration, expected: tuple[str, str] | None) -> None:
    found = detect_vendor(configured, load_presets())
    assert (None if found is None else (found[0].name, found[1])) == expected
