"""A connect session issued for an app: the same steps for POST /api/connect-sessions and
the in-process `Tokenlife.create_connect_session`. The body is read
(core.connect_session.parse_session_request) and the integration looked up by the caller,
which answers its own errors (a problem document, or UsageError)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.core.connect_links import allowed_return_to, connect_link
from tokenlife.core.connect_session import SessionRequest, SessionRequestError
from tokenlife.core.events import iso8601
from tokenlife.core.integration import Integration


@dataclass(frozen=True, slots=True)
class IssuedSession:
    token: str
    url: str  # holds the token
    expires_at: float

    def as_json(self) -> dict[str, Any]:
        """The API's answer (201), read back by models.ConnectSession."""
        return {"token": self.token, "url": self.url, "expires_at": iso8601(self.expires_at)}


async def issue_connect_session(
    wanted: SessionRequest,
    integration: Integration,
    sessions: ConnectSessions,
    return_to_allowed: tuple[str, ...],
    now: float,
) -> IssuedSession:
    """Store the session and build its link. Raises SessionRequestError (field
    `return_to`) for a return_to outside TOKENLIFE_API_RETURN_TO_ALLOWED."""
    if wanted.return_to is not None and not allowed_return_to(wanted.return_to, return_to_allowed):
        raise SessionRequestError(
            "return_to", "not under a prefix of TOKENLIFE_API_RETURN_TO_ALLOWED"
        )
    token, session = await sessions.create(wanted, now)
    return IssuedSession(token, connect_link(integration, token), session.expires_at)
