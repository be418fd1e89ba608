"""Dashboard login: the operator pastes an API key once; the browser then holds only a
random session id (Redis keeps the rest, adapters/dashboard_sessions.py).

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it) and Secure, except on plain http to a loopback host, where browsers would drop a
Secure cookie set over http and `make run` could never log in. Every state-changing form
carries the session's synchronizer token (OWASP CSRF cheat sheet,
https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html),
and a POST whose Origin or Sec-Fetch-Site says another site sent it is refused first.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from tokenlife.adapters.dashboard_sessions import DashboardSession, DashboardSessions
from tokenlife.adapters.keys import DASHBOARD_SESSION_TTL_SECONDS
from tokenlife.web.auth import ApiKey

COOKIE = "tokenlife_dashboard"
COOKIE_PATH = "/dashboard"
CSRF_FIELD = "csrf_token"
MAX_SESSION_ID = 100  # ours are 43 characters; a longer cookie is not looked up


@dataclass(frozen=True, slots=True)
class Login:
    session_id: str
    session: DashboardSession
    key: ApiKey


def is_loopback(host: str) -> bool:
    """`host` (a Host header's name, without port) names this machine."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_secure(scheme: str, host: str, forwarded_proto: str | None) -> bool:
    """Secure unless the browser talks plain http to a loopback host. Behind a proxy that
    ends TLS, X-Forwarded-Proto: https (or a public Host) keeps it Secure. Pure."""
    if scheme == "https" or (forwarded_proto or "").split(",")[0].strip() == "https":
        return True
    return not is_loopback(urlsplit(f"//{host}").hostname or "")


def request_secure(request: web.Request) -> bool:
    return cookie_secure(request.scheme, request.host, request.headers.get("X-Forwarded-Proto"))


def set_cookie(response: web.StreamResponse, request: web.Request, session_id: str) -> None:
    response.set_cookie(
        COOKIE, session_id, path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=request_secure(request), max_age=DASHBOARD_SESSION_TTL_SECONDS,
    )  # fmt: skip


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request_secure(request)
    )


def cross_site(request: web.Request) -> bool:
    """The browser says another site sent this request (Fetch Metadata, Origin)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    # Hosts only: behind a TLS proxy the Origin says https and this request says http.
    return origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower()


async def current_login(
    request: web.Request, sessions: DashboardSessions, keys: list[ApiKey]
) -> Login | None:
    """The request's login, while its session lives and its key is still configured (a
    key removed from TOKENLIFE_API_KEYS ends its sessions at the next restart)."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > MAX_SESSION_ID:
        return None
    session = await sessions.get(session_id)
    if session is None:
        return None
    key = next((k for k in keys if hmac.compare_digest(k.digest, session.key_digest)), None)
    return None if key is None else Login(session_id, session, key)


def csrf_ok(login: Login, submitted: object) -> bool:
    return isinstance(submitted, str) and hmac.compare_digest(
        submitted.encode(), login.session.csrf_token.encode()
    )
