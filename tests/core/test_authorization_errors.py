"""The refusal table: each error (and error_description) a provider sends back, what
tokenlife says caused it, and what to change."""

from __future__ import annotations

import pytest

from tokenlife.core.authorization_error_vendors import (
    GOOGLE_ERRORS,
    MICROSOFT_CODES,
    OWN_FIXES,
    STANDARD_ERRORS,
)
from tokenlife.core.authorization_errors import (
    MAX_DESCRIPTION,
    Refusal,
    bounded,
    clean_error,
    diagnose_refusal,
)

MS = "https://learn.microsoft.com/entra/identity-platform/reference-error-codes"
GOOGLE = "https://developers.google.com/identity/protocols/oauth2/web-server#authorization-errors-"
CALLBACK = "https://app.example.com/oauth/callback"


def ms(code: str, error: str = "invalid_request") -> Refusal:
    text = f"AADSTS{code}: what Entra says.\r\nTrace ID: 1f0e\r\nTimestamp: 2026-11-30 15:00:00Z"
    return Refusal(error, text, provider="microsoft", redirect_uri=CALLBACK)


# (refusal, key, severity, words the first cause and fix must carry, source prefix)
CASES = [
    pytest.param(
        Refusal("invalid_request", "unsupported prompt value requested", prompt="select_account"),
        "prompt_unsupported", "critical",
        ["prompt=select_account", 'extra_authorization_params.prompt = "consent"',
         "no prompt_values_supported published"],
        "https://openid.net/specs/openid-connect-core-1_0.html",
        id="prompt-unsupported-no-discovery",
    ),
    pytest.param(
        Refusal("invalid_request", "Invalid prompt", prompt="select_account",
                prompt_values_supported=("none", "login")),
        "prompt_unsupported", "critical",
        ["prompt=select_account", "Send prompt=login", "prompt_values_supported in its "
         "discovery document: none login"],
        "https://openid.net/specs/openid-connect-prompt-create-1_0.html",
        id="prompt-unsupported-discovery-login-only",
    ),
    pytest.param(
        Refusal("invalid_request", "prompt not supported", prompt="consent",
                prompt_values_supported=("none", "select_account")),
        "prompt_unsupported", "critical",
        ["prompt=consent", 'extra_authorization_params.prompt = ""'],
        "https://openid.net/specs/openid-connect-prompt-create-1_0.html",
        id="prompt-unsupported-nothing-usable",
    ),
    pytest.param(
        Refusal("invalid_scope", "Scope 'offline_access' is not valid", provider="x",
                scope="tweet.read offline_access", offline_scopes=("offline.access",)),
        "invalid_scope", "critical",
        ["sent as offline_access", "x spells it offline.access", "Request offline.access"],
        "https://www.rfc-editor.org/rfc/rfc6749",
        id="invalid-scope-catalogue-spelling",
    ),
    pytest.param(
        Refusal("invalid_scope", "unknown scope: calendar.write", scope="openid calendar.write"),
        "invalid_scope", "critical",
        ["the scope calendar.write", "Remove calendar.write"],
        "https://www.rfc-editor.org/rfc/rfc6749",
        id="invalid-scope-named",
    ),
    pytest.param(
        Refusal("access_denied", "The user denied access"),
        "access_denied", "info", ["user declined", "allow access"],
        "https://www.rfc-editor.org/rfc/rfc6749", id="access-denied",
    ),
    pytest.param(
        Refusal("unauthorized_client", None), "unauthorized_client", "critical",
        ["authorization-code flow", "refresh tokens"], "https://www.rfc-editor.org/rfc/rfc6749",
        id="unauthorized-client",
    ),
    pytest.param(
        Refusal("unsupported_response_type", None), "unsupported_response_type", "critical",
        ["response_type=code", "web application"], "https://www.rfc-editor.org/rfc/rfc6749",
        id="unsupported-response-type",
    ),
    pytest.param(
        Refusal("redirect_uri_mismatch", "Bad Request", provider="google", redirect_uri=CALLBACK),
        "redirect_uri_mismatch", "critical", ["redirect_uri", f"Register {CALLBACK} exactly"],
        GOOGLE + "redirect-uri-mismatch", id="google-redirect-uri-mismatch",
    ),
    pytest.param(
        Refusal("invalid_request", "The redirect_uri is not registered", redirect_uri=CALLBACK),
        "redirect_uri_mismatch", "critical", [f"Register {CALLBACK} exactly"],
        "https://www.rfc-editor.org/rfc/rfc6749#section-3.1.2", id="generic-redirect-uri",
    ),
    pytest.param(ms("50011"), "redirect_uri_mismatch", "critical",
                 ["AADSTS50011", f"Register {CALLBACK}", "Redirect URIs"], MS, id="AADSTS50011"),
    pytest.param(ms("65001", "consent_required"), "consent_required", "warning",
                 ["AADSTS65001", "admin consent"], MS, id="AADSTS65001"),
    pytest.param(ms("700016", "unauthorized_client"), "application_not_in_tenant", "critical",
                 ["AADSTS700016", "tenant"], MS, id="AADSTS700016"),
    pytest.param(ms("7000215", "invalid_client"), "client_secret_invalid", "critical",
                 ["AADSTS7000215", "Value (not its Secret ID)"], MS, id="AADSTS7000215"),
    pytest.param(ms("7000222", "invalid_client"), "client_secret_expired", "critical",
                 ["AADSTS7000222", "new client secret", "does not help"], MS, id="AADSTS7000222"),
    pytest.param(ms("50076", "interaction_required"), "mfa_required", "info",
                 ["AADSTS50076", "multi-factor"], MS, id="AADSTS50076"),
    pytest.param(ms("50079", "interaction_required"), "mfa_required", "info",
                 ["AADSTS50079", "register"], MS, id="AADSTS50079"),
    pytest.param(ms("90072", "invalid_request"), "user_not_in_tenant", "warning",
                 ["AADSTS90072", "guest"], MS, id="AADSTS90072"),
    pytest.param(Refusal("admin_policy_enforced", None, provider="google"),
                 "admin_policy_enforced", "warning", ["Workspace administrator", "client_id"],
                 GOOGLE + "admin-policy-enforced", id="google-admin-policy-enforced"),
    pytest.param(Refusal("org_internal", None, provider="google"), "org_internal", "critical",
                 ["'Internal'", "External"], GOOGLE + "org-internal", id="google-org-internal"),
    pytest.param(Refusal("disallowed_useragent", None, provider="google"),
                 "disallowed_useragent", "info", ["embedded browsers", "full browser"],
                 GOOGLE + "disallowed-useragent", id="google-disallowed-useragent"),
    pytest.param(Refusal("invalid_client", "Client authentication failed."), "invalid_client",
                 "critical", ["client_secret", "token_endpoint_auth_method"],
                 "https://www.rfc-editor.org/rfc/rfc6749#section-5.2", id="invalid-client"),
    pytest.param(Refusal("invalid_grant", "Code expired"), "invalid_grant", "warning",
                 ["expired", "Connect again"], "https://www.rfc-editor.org/rfc/rfc6749",
                 id="invalid-grant"),
    pytest.param(Refusal("login_required", None), "interaction_required", "warning",
                 ["prompt=none"], "https://openid.net/specs/openid-connect-core-1_0.html#AuthError",
                 id="oidc-login-required"),
    pytest.param(Refusal("server_error", "HTTP 503"), "provider_unavailable", "warning",
                 ["unavailable", "later"], "https://www.rfc-editor.org/rfc/rfc6749",
                 id="server-error"),
    pytest.param(Refusal("wat_is_this", "no idea"), "other", "warning",
                 ["no rule", "error=wat_is_this; error_description: no idea"],
                 "https://www.rfc-editor.org/rfc/rfc6749", id="unknown-error"),
]  # fmt: skip


@pytest.mark.parametrize(("refusal", "key", "severity", "words", "source"), CASES)
def test_each_refusal_gets_its_cause_and_fix(
    refusal: Refusal, key: str, severity: str, words: list[str], source: str
) -> None:
    diagnosis = diagnose_refusal(refusal)
    assert (diagnosis.key, diagnosis.severity) == (key, severity)
    first = diagnosis.causes[0]
    said = " ".join(f"{c.cause} {c.fix} {c.evidence}" for c in diagnosis.causes)
    for word in words:
        assert word in said, (word, said)
    assert first.source is not None and first.source.startswith(source)
    assert f"error={refusal.error}" in first.evidence


def test_a_google_access_denied_also_names_testing_mode_and_admin_policy() -> None:
    causes = diagnose_refusal(Refusal("access_denied", None, provider="google")).causes
    assert [c.cause.split(" ")[1] for c in causes] == ["user", "app's", "policy"]
    assert "Test users" in causes[1].fix
    assert causes[1].source == "https://support.google.com/cloud/answer/15549945"
    elsewhere = diagnose_refusal(Refusal("access_denied", None, provider="okta")).causes
    assert len(elsewhere) == 2  # testing mode is Google's


@pytest.mark.parametrize("error", sorted(OWN_FIXES))
def test_tokenlifes_own_failures_keep_their_explanation_and_say_what_to_do(error: str) -> None:
    diagnosis = diagnose_refusal(Refusal(error, "What tokenlife saw."))
    (cause,) = diagnosis.causes
    assert (diagnosis.key, cause.cause, cause.fix) == (
        error,
        "What tokenlife saw.",
        OWN_FIXES[error],
    )


def test_every_vendor_and_standard_entry_has_a_source() -> None:
    tables = [*MICROSOFT_CODES.values(), *GOOGLE_ERRORS.values(), *STANDARD_ERRORS.values()]
    assert all(rule.source.startswith("https://") for rule in tables)
    assert {"50011", "65001", "700016", "7000215", "7000222", "50076", "50079", "90072"} <= set(
        MICROSOFT_CODES
    )


def test_an_aadsts_code_wins_over_the_error_it_came_with() -> None:
    # AADSTS7000222 arrives as invalid_client: the expired secret is the cause, not a typo.
    assert diagnose_refusal(ms("7000222", "invalid_client")).key == "client_secret_expired"
    # An AADSTS number tokenlife has no entry for falls back to the error code's rule.
    assert diagnose_refusal(ms("12345", "invalid_client")).key == "invalid_client"


def test_provider_text_is_bounded_and_on_one_line() -> None:
    long = "AADSTS7000222: expired.\r\n" + "x" * 5000
    kept = bounded(long)
    assert kept is not None and len(kept) == MAX_DESCRIPTION and "\n" not in kept
    assert kept.endswith("…")
    evidence = diagnose_refusal(Refusal("invalid_client", long)).causes[0].evidence
    assert len(evidence) < 300
    assert bounded(None) is None


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("access_denied", "access_denied"),
        ('bad"quote\\', "badquote"),
        ("\x00\n", "unknown_error"),
        ("x" * 500, "x" * 64),
        ("<script>", "<script>"),  # allowed characters; the page escapes them
    ],
)
def test_an_error_parameter_is_kept_in_rfc_6749_characters(raw: str, kept: str) -> None:
    assert clean_error(raw) == kept
