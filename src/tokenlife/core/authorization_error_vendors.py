"""Error codes with a known cause and fix: RFC 6749 / OpenID Connect codes, Microsoft's
AADSTS numbers (in `error_description`), Google's `error` values, and tokenlife's own.
Data for core/authorization_errors.py, which also has the rules that need what was sent.

Microsoft warns that AADSTS codes and texts may change; they are matched only to explain,
never to decide what tokenlife does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MICROSOFT = (
    "https://learn.microsoft.com/entra/identity-platform/reference-error-codes#aadsts-error-codes"
)
GOOGLE = "https://developers.google.com/identity/protocols/oauth2/web-server"
RFC6749_AUTHORIZATION = "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"
RFC6749_TOKEN = "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"
OIDC_ERRORS = "https://openid.net/specs/openid-connect-core-1_0.html#AuthError"


@dataclass(frozen=True, slots=True)
class VendorRule:
    key: str
    severity: Literal["critical", "warning", "info"]
    cause: str
    fix: str  # may name {redirect_uri}
    source: str


REDIRECT_FIX = (
    "Register {redirect_uri} exactly (scheme, host, port, path, trailing slash) as a redirect "
    "URI of the client at the provider, or set the integration's redirect_uri to one that is "
    "registered."
)

MICROSOFT_CODES: dict[str, VendorRule] = {
    "50011": VendorRule(
        "redirect_uri_mismatch", "critical",
        "The redirect_uri sent is not one of the app registration's redirect URIs "
        "(AADSTS50011).",
        REDIRECT_FIX.replace("at the provider", "(Authentication > Redirect URIs)"),
        MICROSOFT,
    ),
    "65001": VendorRule(
        "consent_required", "warning",
        "Neither the user nor an administrator has consented to the app for the requested "
        "permissions (AADSTS65001).",
        "Ask the user to connect again and accept; where user consent is turned off in the "
        "tenant, an administrator grants consent (Enterprise applications > Permissions > "
        "Grant admin consent).",
        MICROSOFT,
    ),
    "700016": VendorRule(
        "application_not_in_tenant", "critical",
        "The application (client_id) was not found in the tenant the request went to "
        "(AADSTS700016): a wrong client_id or tenant, or a single-tenant app used from "
        "another tenant.",
        "Check client_id, and set tenant to the one the app is registered in; for users of "
        "other organizations make the app multi-tenant and use tenant = \"organizations\".",
        MICROSOFT,
    ),
    "7000215": VendorRule(
        "client_secret_invalid", "critical",
        "The client secret is not a valid secret of this app (AADSTS7000215); often the "
        "secret's ID was copied instead of its value.",
        "Set the integration's client_secret to the secret's Value (not its Secret ID) from "
        "Certificates & secrets.",
        MICROSOFT,
    ),
    "7000222": VendorRule(
        "client_secret_expired", "critical",
        "The app's client secret has expired (AADSTS7000222); re-authorizing users does not "
        "help.",
        "Create a new client secret under Certificates & secrets (they last at most 24 "
        "months) and replace the integration's client_secret.",
        MICROSOFT,
    ),
    "50076": VendorRule(
        "mfa_required", "info",
        "The tenant requires multi-factor authentication for this sign-in (Conditional "
        "Access or per-user MFA; AADSTS50076).",
        "Ask the user to connect again and complete multi-factor authentication.",
        MICROSOFT,
    ),
    "50079": VendorRule(
        "mfa_required", "info",
        "The user must register for multi-factor authentication first (AADSTS50079).",
        "Ask the user to register a second factor (https://aka.ms/mfasetup), then connect "
        "again.",
        MICROSOFT,
    ),
    "90072": VendorRule(
        "user_not_in_tenant", "warning",
        "The user signed in with an account that does not exist in the tenant the request "
        "went to (AADSTS90072).",
        "Invite the user as a guest of the tenant, or use tenant = \"organizations\" (or "
        "\"common\") with a multi-tenant app, or have them sign in with an account of the "
        "tenant.",
        MICROSOFT,
    ),
}  # fmt: skip

GOOGLE_ERRORS: dict[str, VendorRule] = {
    "admin_policy_enforced": VendorRule(
        "admin_policy_enforced", "warning",
        "The user's Google Workspace administrator does not allow this app, or one of the "
        "requested scopes, for their account.",
        "Ask the Workspace administrator to trust the app by its client_id (Admin console > "
        "Security > Access and data control > API controls), or request fewer scopes.",
        GOOGLE + "#authorization-errors-admin-policy-enforced",
    ),
    "org_internal": VendorRule(
        "org_internal", "critical",
        "The app's audience is 'Internal': only accounts of the Google Cloud project's "
        "organization may authorize it.",
        "Sign in with an account of that organization, or set the app's user type to "
        "External in Google Auth Platform > Audience.",
        GOOGLE + "#authorization-errors-org-internal",
    ),
    "disallowed_useragent": VendorRule(
        "disallowed_useragent", "info",
        "Google refuses sign-in inside embedded browsers (in-app web views).",
        "Open the connect link in a full browser (Chrome, Safari, Firefox, Edge), not in an "
        "app's built-in browser.",
        GOOGLE + "#authorization-errors-disallowed-useragent",
    ),
    "redirect_uri_mismatch": VendorRule(
        "redirect_uri_mismatch", "critical",
        "The redirect_uri sent is not one of the client's registered redirect URIs.",
        REDIRECT_FIX,
        GOOGLE + "#authorization-errors-redirect-uri-mismatch",
    ),
}  # fmt: skip

REDIRECT_MISMATCH = VendorRule(
    "redirect_uri_mismatch", "critical",
    "The redirect_uri sent is not one registered for the client (it must match exactly).",
    REDIRECT_FIX, "https://www.rfc-editor.org/rfc/rfc6749#section-3.1.2",
)  # fmt: skip

_PROMPT_NONE = VendorRule(
    "interaction_required", "warning",
    "The provider needs the user to sign in, consent or pick an account, and the request "
    "did not let it (prompt=none).",
    'Do not send prompt=none: set extra_authorization_params.prompt = "consent".',
    OIDC_ERRORS,
)  # fmt: skip
_UNAVAILABLE = VendorRule(
    "provider_unavailable", "warning",
    "The provider was unavailable or overloaded on every try.",
    "Connect again later; check the provider's status page.",
    RFC6749_TOKEN,
)  # fmt: skip

# RFC 6749 §4.1.2.1 / §5.2 and OIDC Core §3.1.2.6 codes whose cause needs nothing more.
STANDARD_ERRORS: dict[str, VendorRule] = {
    "unauthorized_client": VendorRule(
        "unauthorized_client", "critical",
        "The client is not allowed this grant: the authorization-code flow (or, at the "
        "token endpoint, the refresh_token grant) is not enabled for it.",
        "In the client's registration at the provider, allow the authorization code grant "
        "and refresh tokens / offline access, for a web (confidential) client.",
        RFC6749_AUTHORIZATION,
    ),
    "unsupported_response_type": VendorRule(
        "unsupported_response_type", "critical",
        "The server does not allow response_type=code for this client.",
        "Register the client as a web application with the authorization code flow (not "
        "an implicit-only, SPA-only or device client).",
        RFC6749_AUTHORIZATION,
    ),
    "invalid_client": VendorRule(
        "invalid_client", "critical",
        "The token endpoint did not accept the client's credentials: client_id or "
        "client_secret is wrong, or it expects another authentication method.",
        "Check client_id and client_secret, and token_endpoint_auth_method "
        "(client_secret_basic or client_secret_post) against the provider's settings.",
        RFC6749_TOKEN,
    ),
    "invalid_grant": VendorRule(
        "invalid_grant", "warning",
        "The provider refused the code: it expired (codes live minutes), was already used, "
        "or was issued for another redirect_uri, client or PKCE verifier.",
        "Connect again. If it happens to every user, check that nothing (a proxy, a link "
        "preview) opens the callback URL before the user's browser does.",
        RFC6749_TOKEN,
    ),
    "interaction_required": _PROMPT_NONE,
    "login_required": _PROMPT_NONE,
    "consent_required": _PROMPT_NONE,
    "account_selection_required": _PROMPT_NONE,
    "server_error": _UNAVAILABLE,
    "temporarily_unavailable": _UNAVAILABLE,
    "unreachable": _UNAVAILABLE,
    "timeout": _UNAVAILABLE,
    "rate_limited": _UNAVAILABLE,
    "transient": _UNAVAILABLE,
}  # fmt: skip
OTHER = VendorRule(
    "other", "warning",
    "The provider refused the authorization with an error tokenlife has no rule for.",
    "Look the error up in the provider's documentation; its description is in the evidence.",
    RFC6749_AUTHORIZATION,
)  # fmt: skip

# tokenlife's own failures: their description (services/exchange_events.py, errors.py)
# already says what happened; this says what to do.
OWN_FIXES: Mapping[str, str] = {
    "invalid_state":
        "Start connecting the account again: a sign-in link works once, for ten minutes.",
    "outcome_unknown":
        "Connect the account again; if it repeats, check the provider's status and the "
        "network path.",
    "storage_unavailable": "Connect the account again once Redis is available.",
    "subject_mismatch":
        "Connect again with the account the connection was made with, or set "
        "allow_account_change.",
    "subject_unknown": "Keep openid in the integration's scopes, or set allow_account_change.",
    "issuer_mismatch":
        "Check the integration's issuer (exact URL, trailing slash); otherwise the callback "
        "came from another server.",
    "invalid_id_token":
        "Check client_id and issuer, and the clocks of the provider and the worker.",
    "invalid_response":
        "The token endpoint answered something unusable: check token_url.",
    "invalid_account_response": "Check the integration's account_url and the scopes it needs.",
    "unknown_integration":
        "The integration is no longer configured: connect through a configured one.",
    "integration_unavailable":
        "The provider's discovery document could not be fetched: connect again when it is back.",
}  # fmt: skip
