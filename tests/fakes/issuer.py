"""An OpenID provider's discovery endpoint that a test can switch off (HTTP 503)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Issuer:
    url: str = ""
    up: bool = False
    asked: int = 0
    revoked: list[str] = field(default_factory=list)
    # Where the document says revocation is: a provider may move it between two starts.
    revocation_path: str = "/revoke"

    async def revoke(self, request: web.Request) -> web.Response:
        """RFC 7009 §2.2: 200 for any token."""
        self.revoked.append(str((await request.post()).get("token", "")))
        return web.Response(status=200)

    async def discovery(self, request: web.Request) -> web.Response:
        self.asked += 1
        if not self.up:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "revocation_endpoint": f"{self.url}{self.revocation_path}",
            }
        )

    def integrations_file(self, path: Path, steady_base: str, callback: str) -> Path:
        """`steady` (explicit endpoints) and `oidc` (endpoints from this issuer)."""
        path.write_text(
            f"""
[integrations.steady]
provider = "custom"
authorize_url = "{steady_base}/authorize"
token_url = "{steady_base}/token"
client_id = "generic-client"
client_secret = "generic-secret"
redirect_uri = "{callback}"

[integrations.oidc]
provider = "custom"
issuer = "{self.url}"
client_id = "oidc-client"
client_secret = "oidc-secret"
redirect_uri = "{callback}"
"""
        )
        return path


@asynccontextmanager
async def serve_issuer() -> AsyncIterator[Issuer]:
    """An issuer on a free port of 127.0.0.1, down until `up` is set."""
    state = Issuer()
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", state.discovery)
    app.router.add_post("/revoke", state.revoke)
    app.router.add_post("/oauth/revoke", state.revoke)
    async with TestServer(app, host="127.0.0.1") as server:
        state.url = f"http://127.0.0.1:{server.port}"
        yield state
