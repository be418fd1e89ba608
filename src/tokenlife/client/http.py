"""What both clients do with httpx alike: check their arguments, build each request's
URL, headers and timeout, and turn httpx's failures into tokenlife's errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tokenlife.client.calls import Call
from tokenlife.errors import EndpointTimeoutError, TransientError, TransportError, UsageError

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the API is and how to authenticate to it; the key stays out of the repr."""

    base_url: str
    api_key: str = field(repr=False)
    timeout: httpx.Timeout

    @classmethod
    def checked(cls, base_url: str, api_key: str, timeout: float | httpx.Timeout) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise UsageError(f"base_url must be an http(s) URL without a query, not {base_url!r}")
        if not api_key:
            raise UsageError("api_key is empty")
        limits = httpx.Timeout(timeout)
        for name in ("connect", "read", "write", "pool"):
            value = getattr(limits, name)
            if value is not None and value <= 0:
                raise UsageError(f"timeout ({name}) must be positive or None")
        return cls(base_url.rstrip("/"), api_key, limits)

    def url(self, call: Call[Any]) -> str:
        return self.base_url + call.path

    def headers(self, call: Call[Any]) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if call.authorized:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def timeout_for(self, call: Call[Any]) -> httpx.Timeout:
        """The read timeout waits as long again as the server may hold a long poll."""
        limits = self.timeout
        if not call.holds or limits.read is None:
            return limits
        return httpx.Timeout(
            connect=limits.connect, read=limits.read + call.holds, write=limits.write,
            pool=limits.pool,
        )  # fmt: skip


def request_failed(exc: httpx.RequestError, call: Call[Any]) -> TransientError:
    """The error for a request that got no answer. httpx's exception is left out of the
    chain (`raise ... from None` at the caller): its request holds the API key."""
    what = f"{call.method} {call.path}"
    if isinstance(exc, httpx.TimeoutException):
        return EndpointTimeoutError(f"{what}: no answer in time ({type(exc).__name__})")
    error = TransportError(f"{what}: {type(exc).__name__}: {exc}")
    # Never connected: the server can't have seen the request, so it is safe to send again.
    error.request_sent = not isinstance(exc, httpx.ConnectError)
    return error
