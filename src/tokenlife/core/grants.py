"""Token endpoint request bodies (RFC 6749 §4.1.3 and §6), with client authentication."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tokenlife.core.client_auth import METHODS
from tokenlife.core.integration import Integration
from tokenlife.core.presets import reserved_token_params


@dataclass(frozen=True, slots=True)
class TokenRequest:
    url: str
    form: dict[str, str] = field(repr=False)
    headers: dict[str, str] = field(repr=False)


def authorization_code_request(
    integration: Integration, code: str, redirect_uri: str, verifier: str | None
) -> TokenRequest:
    """§4.1.3: redirect_uri must repeat the one sent in the authorization request."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier  # RFC 7636 §4.5
    return _authenticated(integration, _with_extra(form, integration.token_params))


def refresh_token_request(integration: Integration, refresh_token: str) -> TokenRequest:
    """§6: scope is omitted, so the grant keeps the scope originally granted."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _authenticated(integration, _with_extra(form, integration.refresh_params))


def revocation_request(integration: Integration, token: str, hint: str) -> TokenRequest:
    """RFC 7009 §2.1: the token and a hint of its type, with client authentication."""
    assert integration.revocation_url is not None
    request = _authenticated(integration, {"token": token, "token_type_hint": hint})
    return TokenRequest(url=integration.revocation_url, form=request.form, headers=request.headers)


def _with_extra(form: dict[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """A vendor's extra parameters (Shopify's expiring=1, Zendesk's expires_in) after
    tokenlife's own, never one tokenlife sets (loading refuses those names already)."""
    for key, value in extra.items():
        if not reserved_token_params([key]):
            form.setdefault(key, value)
    return form


def _authenticated(integration: Integration, form: dict[str, str]) -> TokenRequest:
    headers = {"Accept": "application/json"}
    METHODS[integration.token_endpoint_auth_method](
        integration.client_id, integration.client_secret, form, headers
    )
    return TokenRequest(url=integration.token_url, form=form, headers=headers)
