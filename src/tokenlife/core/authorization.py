"""The authorization request (RFC 6749 §4.1.1) and what we remember about it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tokenlife.core import pkce
from tokenlife.core.integration import Integration, split_scope


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """Kept under the state until the user comes back; everything the exchange needs."""

    integration: str
    connection_id: str
    redirect_uri: str
    params: Mapping[str, str]  # exactly the query parameters the URL carried
    created_at: float
    verifier: str | None = field(default=None, repr=False)
    # Where the HTTP connect flow sends the user afterwards (checked against an allow-list).
    return_to: str | None = None
    # Who the app said is connecting (a connect session's `end_user`: id, email, display_name).
    end_user: Mapping[str, str] | None = None
    # SHA-256 (hex) of the nonce in the cookie /connect set in the browser that started the
    # flow; the callback refuses a browser without it (RFC 6749 §10.12). None for flows
    # started by `tokenlife authorize-url` or the library, which have no browser of ours.
    browser_binding: str | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        return split_scope(self.params.get("scope", ""))

    def public_dict(self) -> dict[str, Any]:
        """Everything but the PKCE verifier, which the store encrypts separately."""
        return {
            "integration": self.integration,
            "connection_id": self.connection_id,
            "redirect_uri": self.redirect_uri,
            "params": dict(self.params),
            "created_at": self.created_at,
            "return_to": self.return_to,
            "end_user": None if self.end_user is None else dict(self.end_user),
            "browser_binding": self.browser_binding,
        }


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str
    state: str
    pending: PendingAuthorization


def build_authorization_request(
    integration: Integration,
    connection_id: str,
    state: str,
    verifier: str | None,
    now: float,
    return_to: str | None = None,
    *,
    end_user: Mapping[str, str] | None = None,
    browser_binding: str | None = None,
) -> AuthorizationRequest:
    """The URL to send a user to; `verifier` is ignored when the integration turns PKCE off."""
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": integration.client_id,
        "redirect_uri": integration.redirect_uri,
        "scope": integration.scope_separator.join(integration.scopes),
        **integration.authorization_params,
        "state": state,
    }
    if not integration.scopes:
        del params["scope"]
    if integration.pkce and verifier is not None:
        params["code_challenge"] = pkce.challenge(verifier)
        params["code_challenge_method"] = pkce.METHOD
    else:
        verifier = None
    separator = "&" if "?" in integration.authorize_url else "?"
    pending = PendingAuthorization(
        integration=integration.name,
        connection_id=connection_id,
        redirect_uri=integration.redirect_uri,
        params=dict(params),
        created_at=now,
        verifier=verifier,
        return_to=return_to,
        end_user=end_user,
        browser_binding=browser_binding,
    )
    return AuthorizationRequest(
        url=integration.authorize_url + separator + urlencode(params),
        state=state,
        pending=pending,
    )
