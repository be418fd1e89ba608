"""A generic OpenID Connect provider: refresh tokens for offline_access (OIDC Core §11),
a discovery document, and whatever misbehaviour a test scripts per code."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.base import FakeProvider


class FakeGeneric(FakeProvider):
    rotates_refresh_tokens = True
    retires_used_refresh_tokens = True
    detects_reuse = True

    def __init__(self) -> None:
        super().__init__()
        self.issue_refresh_tokens = True

    def refresh_token_on_consent(
        self, client_id: str, user: str, scopes: tuple[str, ...], params: dict[str, str]
    ) -> bool:
        return self.issue_refresh_tokens and "offline_access" in scopes

    async def discovery(self, request: web.Request) -> web.Response:
        return self.json(
            200,
            {
                "issuer": self.base_url,
                "authorization_endpoint": self.base_url + "/authorize",
                "token_endpoint": self.base_url + "/token",
                "scopes_supported": ["openid", "profile", "offline_access"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": self.sends_iss,
                **(
                    {"prompt_values_supported": list(self.prompt_values_supported)}
                    if self.prompt_values_supported is not None
                    else {}
                ),
            },
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        # GitHub-like account endpoint; only integrations with `account_url` call it.
        app.router.add_route("*", "/user", self.account)
        return app


class FakeGenericWithGrace(FakeGeneric):
    """Rotates and detects reuse, but the previous refresh token keeps working for ten
    minutes after a rotation: Atlassian's leeway
    (https://developer.atlassian.com/cloud/oauth/getting-started/refresh-tokens)."""

    reuse_grace_seconds = 600.0
