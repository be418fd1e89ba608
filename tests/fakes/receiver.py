"""A local HTTP receiver for notifications: records every POST, answers as scripted."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class AlertReceiver:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *statuses: int) -> None:
        """Answer these statuses in order on `path`; the last one repeats."""
        with self.lock:
            self.scripts[path] = list(statuses)

    def at(self, path: str, status: int | None = 200) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path
                    and (status is None or r.status == status)]  # fmt: skip

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self.lock:
            script = self.scripts.get(request.path, [200])
            status = script.pop(0) if len(script) > 1 else script[0]
            self.received.append(Received(request.path, dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app
