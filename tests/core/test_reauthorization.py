"""Why a refresh failed for good: the preset's causes first, then the generic ones."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tokenlife.core.diagnosis import Cause
from tokenlife.core.policy import SECONDS_PER_DAY
from tokenlife.core.presets import Preset, ReauthorizationRule
from tokenlife.core.reauthorization import diagnose_reauthorization, is_permanent
from tokenlife.providers import load_presets

DAY = float(SECONDS_PER_DAY)
INACTIVE = (
    "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on "
    "2024-01-01T00:00:00Z and was inactive for 90.00:00:00."
)
SECRET_EXPIRED = (
    "AADSTS7000222: The provided client secret keys for app '00000000-0000-0000-0000-000000000000'"
    " are expired."
)
REVOKED = "AADSTS50173: The provided grant has expired due to it being revoked."

# Fragments of each cause, in order (from the TOML files under tokenlife/providers/).
TESTING = ("'Testing' publishing status", "seven days")
SIX_MONTHS = ("six months",)
MS_INACTIVE = ("90 days of inactivity",)
MS_SECRET = ("client secret has expired",)
MS_REVOKED = ("password was reset",)
MS_GRANT = ("Conditional Access",)
GENERIC_GRANT = ("no longer valid",)
GENERIC_CLIENT = ("rejected the client credentials",)
GENERIC_UNAUTHORIZED = ("not allowed to use the refresh_token grant",)


def presets() -> dict[str, Preset]:
    return load_presets()


def diagnose(
    provider: str, error: str, description: str | None, idle_seconds: float | None = None
) -> list[Cause]:
    return diagnose_reauthorization(
        presets()[provider],
        presets()["custom"],
        error=error,
        description=description,
        idle_seconds=idle_seconds,
    )


CASES = [
    pytest.param(
        "google", "invalid_grant", None, [TESTING, SIX_MONTHS, GENERIC_GRANT], id="google-grant"
    ),
    pytest.param(
        "google",
        "invalid_grant",
        "Token has been expired or revoked.",
        [TESTING, SIX_MONTHS, GENERIC_GRANT],
        id="google-grant-described",
    ),
    pytest.param("google", "invalid_client", None, [GENERIC_CLIENT], id="google-client"),
    pytest.param(
        "google", "unauthorized_client", None, [GENERIC_UNAUTHORIZED], id="google-unauthorized"
    ),
    pytest.param(
        "microsoft",
        "invalid_grant",
        INACTIVE,
        [MS_INACTIVE, MS_GRANT, GENERIC_GRANT],
        id="microsoft-inactive",
    ),
    pytest.param(
        "microsoft",
        "invalid_grant",
        INACTIVE.lower(),
        [MS_INACTIVE, MS_GRANT, GENERIC_GRANT],
        id="microsoft-inactive-any-case",
    ),
    pytest.param(
        "microsoft",
        "invalid_grant",
        REVOKED,
        [MS_REVOKED, MS_GRANT, GENERIC_GRANT],
        id="microsoft-revoked",
    ),
    pytest.param(
        "microsoft", "invalid_grant", None, [MS_GRANT, GENERIC_GRANT], id="microsoft-grant-bare"
    ),
    pytest.param(
        "microsoft",
        "invalid_grant",
        "AADSTS9002313: Invalid request.",
        [MS_GRANT, GENERIC_GRANT],
        id="microsoft-grant-other-code",
    ),
    pytest.param(
        "microsoft",
        "invalid_client",
        SECRET_EXPIRED,
        [MS_SECRET, GENERIC_CLIENT],
        id="microsoft-secret-expired",
    ),
    pytest.param(
        "microsoft",
        "invalid_client",
        "AADSTS7000215: Invalid client secret provided.",
        [GENERIC_CLIENT],
        id="microsoft-secret-wrong",
    ),
    # A description rule also needs its error code.
    pytest.param(
        "microsoft", "invalid_client", INACTIVE, [GENERIC_CLIENT], id="microsoft-code-mismatch"
    ),
    pytest.param("custom", "invalid_grant", None, [GENERIC_GRANT], id="custom-grant"),
    pytest.param("custom", "invalid_client", None, [GENERIC_CLIENT], id="custom-client"),
    pytest.param(
        "custom", "unauthorized_client", None, [GENERIC_UNAUTHORIZED], id="custom-unauthorized"
    ),
    pytest.param(
        "microsoft",
        "unauthorized_client",
        "AADSTS700016",
        [GENERIC_UNAUTHORIZED],
        id="microsoft-unauthorized",
    ),
]


@pytest.mark.parametrize(("provider", "error", "description", "expected"), CASES)
def test_causes_in_order(
    provider: str, error: str, description: str | None, expected: list[tuple[str, ...]]
) -> None:
    causes = diagnose(provider, error, description)
    assert len(causes) == len(expected), [c.cause for c in causes]
    for cause, fragments in zip(causes, expected, strict=True):
        for fragment in fragments:
            assert fragment in cause.cause
        assert cause.fix
        assert cause.source is not None and cause.source.startswith("https://")


@pytest.mark.parametrize(("provider", "error", "description", "expected"), CASES)
def test_no_duplicate_causes(
    provider: str, error: str, description: str | None, expected: list[tuple[str, ...]]
) -> None:
    causes = [c.cause for c in diagnose(provider, error, description)]
    assert len(causes) == len(set(causes))


@pytest.mark.parametrize("provider", ["google", "microsoft", "custom"])
@pytest.mark.parametrize(
    "error", ["access_denied", "invalid_scope", "unsupported_grant_type", "temporarily_gone"]
)
def test_unknown_error_falls_back(provider: str, error: str) -> None:
    assert diagnose(provider, error, "something else", idle_seconds=DAY) == [
        Cause(
            cause=f"The provider refused the refresh token with {error}.",
            fix="Ask the user to connect the account again.",
            evidence=f"the provider answered {error}: something else "
            "(last successful refresh 1.0 days ago)",
            source=None,
        )
    ]


@pytest.mark.parametrize(
    ("provider", "error", "description", "idle_seconds", "evidence"),
    [
        pytest.param(
            "google",
            "invalid_grant",
            None,
            None,
            "the provider answered invalid_grant",
            id="error-only",
        ),
        pytest.param(
            "google",
            "invalid_grant",
            "",
            None,
            "the provider answered invalid_grant",
            id="empty-description",
        ),
        pytest.param(
            "google",
            "invalid_grant",
            "Token has been expired or revoked.",
            None,
            "the provider answered invalid_grant: Token has been expired or revoked.",
            id="description",
        ),
        pytest.param(
            "microsoft",
            "invalid_grant",
            INACTIVE,
            95 * DAY,
            f"the provider answered invalid_grant: {INACTIVE} "
            "(last successful refresh 95.0 days ago)",
            id="description-and-idle",
        ),
        pytest.param(
            "custom",
            "invalid_grant",
            None,
            36 * 3600.0,
            "the provider answered invalid_grant (last successful refresh 1.5 days ago)",
            id="idle-only",
        ),
        pytest.param(
            "custom",
            "invalid_client",
            None,
            0.0,
            "the provider answered invalid_client (last successful refresh 0.0 days ago)",
            id="idle-zero",
        ),
        pytest.param(
            "google",
            "invalid_grant",
            None,
            181.04 * DAY,
            "the provider answered invalid_grant (last successful refresh 181.0 days ago)",
            id="idle-rounded",
        ),
    ],
)
def test_evidence(
    provider: str, error: str, description: str | None, idle_seconds: float | None, evidence: str
) -> None:
    causes = diagnose(provider, error, description, idle_seconds)
    assert causes
    assert {c.evidence for c in causes} == {evidence}


def rule(
    cause: str, contains: str | None = None, error: str = "invalid_grant"
) -> ReauthorizationRule:
    return ReauthorizationRule(
        error=error,
        cause=cause,
        fix="Connect again.",
        source="https://vendor.example/docs",
        description_contains=contains,
    )


GENERIC_GRANT_TEXT = next(
    r.cause for r in load_presets()["custom"].reauthorization if r.error == "invalid_grant"
)


@pytest.mark.parametrize(
    ("rules", "description", "expected"),
    [
        # A description rule comes first even when the file lists it after the plain one.
        pytest.param(
            (rule("plain"), rule("specific", "E42")),
            "E42: expired",
            ["specific", "plain", GENERIC_GRANT_TEXT],
            id="specific-first",
        ),
        pytest.param(
            (rule("plain"), rule("specific", "E42")),
            "E43: other",
            ["plain", GENERIC_GRANT_TEXT],
            id="specific-not-matched",
        ),
        # The same cause text from the preset and the generic rules is named once.
        pytest.param(
            (rule(GENERIC_GRANT_TEXT),),
            None,
            [GENERIC_GRANT_TEXT],
            id="same-as-generic",
        ),
        pytest.param(
            (rule("same"), rule("same", "E42")),
            "E42",
            ["same", GENERIC_GRANT_TEXT],
            id="same-twice",
        ),
        pytest.param((), None, [GENERIC_GRANT_TEXT], id="no-preset-rules"),
    ],
)
def test_rule_order_and_duplicates(
    rules: tuple[ReauthorizationRule, ...], description: str | None, expected: list[str]
) -> None:
    preset = replace(load_presets()["custom"], name="vendor", reauthorization=rules)
    causes = diagnose_reauthorization(
        preset,
        load_presets()["custom"],
        error="invalid_grant",
        description=description,
        idle_seconds=None,
    )
    assert [c.cause for c in causes] == expected


@pytest.mark.parametrize(
    ("provider", "error", "permanent"),
    [
        ("custom", "invalid_grant", True),
        ("custom", "unauthorized_client", True),
        ("custom", "temporarily_unavailable", False),
        ("custom", "invalid_refresh_token", False),
        ("slack", "invalid_refresh_token", True),  # Slack's own code for a dead grant
    ],
)
def test_vendor_codes_named_in_the_catalogue_are_permanent(
    provider: str, error: str, permanent: bool
) -> None:
    assert is_permanent(error, load_presets()[provider]) is permanent
