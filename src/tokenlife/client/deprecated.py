"""`TokenlifeClient`, 0.1's aiohttp client by name: `AsyncClient` now, which refuses 0.1's
`session=` at once with what to write instead, rather than failing deep inside."""

from __future__ import annotations

import httpx

from tokenlife.client.async_client import AsyncClient
from tokenlife.client.http import DEFAULT_TIMEOUT
from tokenlife.errors import UsageError

MIGRATION = (
    "TokenlifeClient(session=...) is gone in tokenlife 0.2: the client is "
    "tokenlife.client.AsyncClient on httpx, and takes http_client=httpx.AsyncClient(...) or "
    "transport= instead of an aiohttp session; its results are dataclasses "
    "(connection.status, not connection['status']). See docs/client.md, "
    '"From TokenlifeClient".'
)


class TokenlifeClient(AsyncClient):
    """Deprecated: `AsyncClient`, under its 0.1 name."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: object = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if session is not None:
            raise UsageError(MIGRATION)
        super().__init__(
            base_url, api_key, timeout=timeout, transport=transport, http_client=http_client
        )
