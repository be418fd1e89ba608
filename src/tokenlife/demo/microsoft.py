"""The Microsoft identity platform (v2.0 endpoints), quirks included.

- A refresh token only when offline_access is requested
  (https://learn.microsoft.com/en-us/entra/identity-platform/scopes-oidc#the-offline_access-scope),
  and only when the user (or an admin) granted it.
- The token response's `scope` never lists offline_access, even when it was granted.
- Access tokens last 60-90 minutes; errors carry AADSTS codes in the description.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from aiohttp import web

from tokenlife.demo.grants import Grant, client_credentials
from tokenlife.demo.provider import DemoProvider


class DemoMicrosoft(DemoProvider):
    title = "Microsoft-like"
    refresh_token_rule = (
        "Microsoft issues a refresh token only when the offline_access scope is requested "
        "(learn.microsoft.com/en-us/entra/identity-platform/scopes-oidc"
        "#the-offline_access-scope)."
    )
    # Refresh tokens replace themselves on every use, but old ones are not revoked
    # (https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens).
    rotates_refresh_tokens = True
    detects_reuse = False

    def __init__(self, *, consent_page: bool = False) -> None:
        super().__init__(consent_page=consent_page)
        self.users_refusing_offline_access: set[str] = set()
        # Client secrets past their expiry: refused with AADSTS7000222, as Entra does
        # (https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes).
        self.expired_secrets: set[str] = set()
        self._rng = random.Random(7)

    def refresh_token_on_consent(
        self, client_id: str, user: str, scopes: tuple[str, ...], params: dict[str, str]
    ) -> bool:
        return "offline_access" in scopes and user not in self.users_refusing_offline_access

    def offline_request(self, scopes: tuple[str, ...], params: dict[str, str]) -> str:
        asked = "asks" if "offline_access" in scopes else "does not ask"
        return f"This request {asked} for offline_access."

    def granted_scope(self, grant: Grant) -> str:
        return " ".join(s for s in grant.scopes if s != "offline_access")

    def token_body(self, grant: Grant, reply: Any, family: str | None = None) -> dict[str, Any]:
        if reply.lifetime is None:
            reply = replace(reply, lifetime=self._rng.randint(3600, 5400))
        body = super().token_body(grant, reply, family)
        body["ext_expires_in"] = body.get("expires_in", 3600)
        return body

    @property
    def issuer(self) -> str:
        # v2.0 ID tokens name the user's tenant (here a fixed one) in `iss`:
        # https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
        return "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"

    def error_body(self, error: str, description: str) -> dict[str, Any]:
        codes = {"invalid_grant": 70008, "invalid_client": 7000215}
        code = codes.get(error, 90000)
        return {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: 0000 Correlation ID: 0000",
            "error_codes": [code],
        }

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}  # aiohttp keeps it
        _, secret = client_credentials(request, form)
        if secret is not None and secret in self.expired_secrets:
            code = 7000222
            return self.json(401, {
                "error": "invalid_client",
                "error_description": f"AADSTS{code}: The provided client secret keys for app "
                "'00000000-0000-0000-0000-000000000000' are expired. Visit the Azure portal to "
                "create new keys for your app. Trace ID: 0000 Correlation ID: 0000",
                "error_codes": [code],
            })  # fmt: skip
        return await super().token(request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tenant}/oauth2/v2.0/authorize", self.authorize)
        app.router.add_post("/{tenant}/oauth2/v2.0/authorize", self.authorize)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        return app
