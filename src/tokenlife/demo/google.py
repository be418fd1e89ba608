"""Google's OAuth 2.0 endpoints, quirks included.

- A refresh token only with access_type=offline, and on a repeat consent only with
  prompt=consent (https://developers.google.com/identity/protocols/oauth2/web-server#offline).
- Access tokens last 3599 s (what Google's token endpoint returns in practice).
- Client credentials in the body or as HTTP Basic; invalid_grant says "Bad Request".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tokenlife.demo.provider import DemoProvider


class DemoGoogle(DemoProvider):
    title = "Google-like"
    refresh_token_rule = (
        "Google issues a refresh token only when the request carries access_type=offline, "
        "and after a user's first consent only with prompt=consent as well "
        "(developers.google.com/identity/protocols/oauth2/web-server#offline)."
    )
    default_lifetime = 3599

    def __init__(self, *, consent_page: bool = False) -> None:
        super().__init__(consent_page=consent_page)
        self.consented: set[tuple[str, str]] = set()  # (client_id, user) with offline access
        self.revoked_tokens: list[str] = []

    def refresh_token_on_consent(
        self, client_id: str, user: str, scopes: tuple[str, ...], params: dict[str, str]
    ) -> bool:
        if params.get("access_type") != "offline":
            return False
        first = (client_id, user) not in self.consented
        self.consented.add((client_id, user))
        return first or "consent" in params.get("prompt", "").split()

    def offline_request(self, scopes: tuple[str, ...], params: dict[str, str]) -> str:
        sent = [f"{k}={params[k]}" if k in params else f"no {k}" for k in ("access_type", "prompt")]
        return f"This request carries {' and '.join(sent)}."

    @property
    def issuer(self) -> str:
        # https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken
        return "https://accounts.google.com"

    def error_body(self, error: str, description: str) -> dict[str, Any]:
        if error == "invalid_grant":
            return {"error": "invalid_grant", "error_description": "Bad Request"}
        if error == "invalid_client":
            return {
                "error": "invalid_client",
                "error_description": "The OAuth client was not found.",
            }
        return super().error_body(error, description)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/o/oauth2/v2/auth", self.authorize)
        app.router.add_post("/o/oauth2/v2/auth", self.authorize)  # the consent page's form
        app.router.add_post("/token", self.token)
        app.router.add_post("/revoke", self.revoke)
        return app

    async def revoke(self, request: web.Request) -> web.Response:
        """RFC 7009 (https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke):
        revoking a refresh token ends its whole grant; unknown tokens answer 400."""
        form = await request.post()
        token = str(form.get("token", ""))
        with self.lock:
            family = self.families.get(self.refresh_tokens.get(token, ""))
            if family is not None:
                family.revoked = True
                self.revoked_tokens.append(token)
        if family is None:
            return self.json(400, {"error": "invalid_token"})
        return web.Response(status=200)
