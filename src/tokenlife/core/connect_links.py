"""Where a connect link points and where a finished flow may send the browser back to:
shared by POST /api/connect-sessions, the dashboard and the in-process library."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from tokenlife.core.integration import Integration

CALLBACK_PATH = "/oauth/callback"
# The query parameter of /connect that carries the session's token.
SESSION_PARAMETER = "session"
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def allowed_return_to(value: str, allowed: tuple[str, ...]) -> bool:
    """Only absolute http(s) URLs under a configured prefix: no open redirects."""
    # Control characters and spaces could split the Location header; a backslash is a
    # slash to browsers (WHATWG URL) but not to urlsplit, so "https://a.example\\@b" would
    # be read differently by us and by the browser.
    if _CONTROL.search(value):
        return False
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return False
    for prefix in allowed:
        allowed_parts = urlsplit(prefix)
        # Scheme and host compared exactly: "https://app.example.com" must not admit
        # "https://app.example.com.evil.io".
        if (parts.scheme, parts.netloc.lower()) == (
            allowed_parts.scheme, allowed_parts.netloc.lower()
        ) and parts.path.startswith(allowed_parts.path):  # fmt: skip
            return True
    return False


def connect_link(integration: Integration, token: str) -> str:
    """The /connect link on the host that serves the integration's redirect_uri: the
    browser-binding cookie /connect sets must reach the callback, so both have to be on
    one host. A redirect_uri ending in /oauth/callback under a path prefix keeps it."""
    parts = urlsplit(integration.redirect_uri)
    prefix = parts.path.removesuffix(CALLBACK_PATH) if parts.path.endswith(CALLBACK_PATH) else ""
    path = f"{prefix}/connect/{quote(integration.name, safe='')}"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode({SESSION_PARAMETER: token}), ""))
