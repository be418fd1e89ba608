"""Serve fake providers on 127.0.0.1 from a background thread with its own event loop,
so a session-scoped worker process can reach them whatever loop a test runs on."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Protocol

from aiohttp import web

from tests.fakes.base import FakeProvider


class Served(Protocol):
    base_url: str

    def app(self) -> web.Application: ...


class FakeServers:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []

    def start(self, *providers: FakeProvider | Served) -> None:
        self._thread.start()
        for provider in providers:
            future: Future[int] = asyncio.run_coroutine_threadsafe(
                self._serve(provider), self._loop
            )
            port = future.result(timeout=10)
            provider.base_url = f"http://127.0.0.1:{port}"

    async def _serve(self, provider: FakeProvider | Served) -> int:
        runner = web.AppRunner(provider.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        return int(runner.addresses[0][1])

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
