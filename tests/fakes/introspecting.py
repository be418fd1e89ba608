"""A provider like Salesforce: token responses without `expires_in` and opaque access
tokens, but an RFC 7662 introspection endpoint that tells each token's `exp`
(https://www.rfc-editor.org/rfc/rfc7662), and advertises it in discovery (RFC 8414 §2)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.base import Grant, Reply
from tests.fakes.generic import FakeGeneric
from tokenlife.demo.grants import client_credentials


class FakeIntrospecting(FakeGeneric):
    def __init__(self) -> None:
        super().__init__()
        self.lifetime = 7200  # what introspection says each new access token lasts
        self.expiry: dict[str, int] = {}  # access token -> exp
        self.introspection_requests: list[dict[str, str]] = []  # form and Authorization
        self.introspection_replies: list[Reply] = []  # scripted answers; the last repeats

    def token_body(self, grant: Grant, reply: Reply, family: str | None = None) -> dict[str, Any]:
        body = super().token_body(grant, reply, family)
        body.pop("expires_in", None)
        with self.lock:
            self.expiry[body["access_token"]] = int(time.time()) + self.lifetime
        return body

    async def introspect(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        with self.lock:
            self.introspection_requests.append(
                {**form, "authorization": request.headers.get("Authorization", "")}
            )
            reply = self.take(self.introspection_replies)
        scripted = await self._play(reply)
        if scripted is not None:
            return scripted
        client_id, secret = client_credentials(request, form)
        client = self.clients.get(client_id or "")
        if client is None or secret != client.client_secret:
            return self.json(
                401, self.error_body("invalid_client", "Client authentication failed.")
            )
        exp = self.expiry.get(form.get("token", ""))
        if exp is None or exp <= time.time():
            return self.json(200, {"active": False})  # §2.2: nothing else about a dead token
        return self.json(200, {"active": True, "exp": exp, "client_id": client.client_id,
                               "token_type": "Bearer"})  # fmt: skip

    async def discovery(self, request: web.Request) -> web.Response:
        response = await super().discovery(request)
        assert response.text is not None
        document = {
            **json.loads(response.text),
            "introspection_endpoint": self.base_url + "/introspect",
        }
        return self.json(200, document)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/introspect", self.introspect)
        return app
