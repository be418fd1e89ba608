"""What both clients do with httpx alike: check their arguments, build each request's
URL, headers and timeout, and turn httpx's failures into tokenlife's errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tokenlife.client.calls import Call
from tokenlife.errors import EndpointTimeoutError, TransientError, TransportError, UsageError

DEFAULT_TIMEOUT = 10.0

# httpx failures whose text is the operating system's or the TLS library's (refused,
# reset, unknown host) and never holds a header. Any other one (LocalProtocolError quotes
# the header it refused: the Authorization header, key and all) is named by class only.
_TEXT_SAFE = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.CloseError)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the API is and how to authenticate to it; the key stays out of the repr."""

    base_url: str
    api_key: str = field(repr=False)
    timeout: httpx.Timeout

    @classmethod
    def checked(cls, base_url: str, api_key: str, timeout: float | httpx.Timeout) -> Target:
        check_api_key(api_key)
        limits = httpx.Timeout(timeout)
        for name in ("connect", "read", "write", "pool"):
            value = getattr(limits, name)
            if value is not None and value <= 0:
                raise UsageError(f"timeout ({name}) must be positive or None")
        return cls(checked_base_url(base_url), api_key, limits)

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

    def request(self, call: Call[Any]) -> dict[str, Any]:
        """The arguments of `httpx.(Async)Client.request` for `call`."""
        return {
            "method": call.method, "url": self.url(call), "params": call.params,
            "json": call.body, "headers": self.headers(call), "timeout": self.timeout_for(call),
            "auth": None, "follow_redirects": False,
        }  # fmt: skip


def check_api_key(api_key: str) -> None:
    """A key is printable ASCII without whitespace (what TOKENLIFE_API_KEYS holds). A key
    read from a file with its trailing newline would otherwise fail in httpx, whose error
    quotes the header, key and all; the message here never quotes the key."""
    if not isinstance(api_key, str) or not api_key:
        raise UsageError("api_key is empty")
    if not all("!" <= char <= "~" for char in api_key):
        raise UsageError(
            "api_key holds whitespace, a control or a non-ASCII character (a newline read "
            "with it from a file?); it must be printable ASCII"
        )


def checked_base_url(base_url: str) -> str:
    """The base URL without its trailing "/", parsed once by httpx as every request's will
    be. A URL with user:password is refused: httpx would send them as Basic auth in place
    of the key, and they would show in reprs and errors, so such a URL is never quoted."""
    shown = "a URL with credentials" if "@" in base_url else repr(base_url)
    wanted = f"base_url must be an http(s) URL without credentials, query or fragment, not {shown}"
    if not isinstance(base_url, str) or any(c in "?#" or c.isspace() for c in base_url):
        raise UsageError(wanted)
    try:
        url: httpx.URL | None = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError, ValueError):
        url = None  # raised after the block, unchained: httpx's text may quote the URL
    if url is None or url.scheme not in ("http", "https") or not url.host or url.userinfo:
        raise UsageError(wanted)
    if url.port is not None and not 0 < url.port < 65536:
        raise UsageError(wanted)
    return base_url.rstrip("/")


def request_failed(exc: httpx.RequestError, call: Call[Any]) -> TransientError:
    """The error for a request that got no answer. Build it in the `except` block and raise
    it after: httpx's exception must be neither its cause nor its context, as its request
    holds the API key."""
    what = f"{call.method} {call.path}"
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return EndpointTimeoutError(f"{what}: no answer in time ({kind})")
    said = f"{kind}: {exc}" if isinstance(exc, _TEXT_SAFE) else kind
    error = TransportError(f"{what}: {said}")
    # Never connected: the server can't have seen the request, so it is safe to send again.
    error.request_sent = not isinstance(exc, httpx.ConnectError)
    return error
