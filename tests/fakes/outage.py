"""A generic provider that can go down: while `down`, every refresh is answered the way
token endpoints answer in an outage (a load balancer's 503 page, or the server's own 500
with `server_error`, RFC 6749 §5.2), and counted; back up, it answers normally."""

from __future__ import annotations

import threading

from aiohttp import web

from tests.fakes.base import Client
from tests.fakes.generic import FakeGeneric


class OutageProvider(FakeGeneric):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused_while_down = 0
        self._count = threading.Lock()

    async def refresh(self, client: Client, form: dict[str, str]) -> web.StreamResponse:
        if not self.down:
            return await super().refresh(client, form)
        with self._count:
            self.refused_while_down += 1
            n = self.refused_while_down
        if n % 2:
            page = "<html><body>503 Service Unavailable</body></html>"
            return web.Response(status=503, text=page, content_type="text/html")
        return self.json(500, self.error_body("server_error", "Backend unavailable."))
