"""Connect sessions: what an app asks for before it sends a user to /connect, checked here.

A session is the credential of the browser flow. Without one, anyone who knows a
connection id could send themselves through the consent screen and bind their own
account to it (issue 9). The app, holding an API key, creates a session for one
connection; the link it hands the user carries a random token that works once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from tokenlife.core.integration import check_connection_id

# Long enough for any real address; bounded so a body can't make us store megabytes.
MAX_RETURN_TO = 2048
# RFC 5321 §4.5.3.1.3: a path (the address) is at most 256 octets; 320 is the usual bound.
MAX_EMAIL = 320
MAX_END_USER_ID = 255
MAX_DISPLAY_NAME = 200
# secrets.token_urlsafe(32) gives 43 characters; anything much longer is not ours.
MAX_TOKEN = 128
END_USER_FIELDS = ("id", "email", "display_name")
REQUEST_FIELDS = ("integration", "connection_id", "return_to", "end_user")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs
# in a name shown to people or in a URL put into a Location header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class SessionRequestError(ValueError):
    """A create-session body is wrong; `field` names the member at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A checked create-session body. `return_to` is checked against the allow-list by
    the web layer, which holds the setting."""

    integration: str
    connection_id: str
    return_to: str | None
    end_user: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class ConnectSession:
    """What a session token stands for, as stored (under the token's hash) until used."""

    integration: str
    connection_id: str
    return_to: str | None
    end_user: Mapping[str, str] | None
    created_at: float
    expires_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "integration": self.integration,
            "connection_id": self.connection_id,
            "return_to": self.return_to,
            "end_user": None if self.end_user is None else dict(self.end_user),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


def token_hash(token: str) -> str:
    """What is stored instead of the token. The token holds 256 random bits, so a plain
    SHA-256 (no salt, no slow hash) already makes a leaked Redis useless to an attacker."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def plausible_token(token: object) -> TypeGuard[str]:
    """Cheap shape check before any lookup: url-safe base64 of a sane length."""
    return isinstance(token, str) and 16 <= len(token) <= MAX_TOKEN and token.isascii() and (
        re.fullmatch(r"[A-Za-z0-9_-]+", token) is not None
    )  # fmt: skip


def parse_session_request(body: object) -> SessionRequest:
    """Check a create-session body; raise SessionRequestError naming the first bad field."""
    if not isinstance(body, dict):
        raise SessionRequestError("body", "must be a JSON object")
    for name in body:
        if name not in REQUEST_FIELDS:
            raise SessionRequestError(str(name)[:64], "is not a known field")
    integration = body.get("integration")
    if not isinstance(integration, str) or not integration:
        raise SessionRequestError("integration", "must be a non-empty string")
    connection_id = body.get("connection_id")
    if not isinstance(connection_id, str):
        raise SessionRequestError("connection_id", "must be a string")
    try:
        check_connection_id(connection_id)
    except ValueError as exc:
        raise SessionRequestError("connection_id", str(exc)) from None
    return_to = body.get("return_to")
    if return_to is not None:
        if not isinstance(return_to, str) or not return_to:
            raise SessionRequestError("return_to", "must be a non-empty string or null")
        if len(return_to) > MAX_RETURN_TO or _CONTROL.search(return_to) or " " in return_to:
            raise SessionRequestError(
                "return_to", f"must be at most {MAX_RETURN_TO} characters, without spaces "
                "or control characters",
            )  # fmt: skip
    return SessionRequest(
        integration=integration,
        connection_id=connection_id,
        return_to=return_to,
        end_user=_end_user(body.get("end_user")),
    )


def _end_user(value: object) -> Mapping[str, str] | None:
    """Who the app says is connecting; kept with the authorization for the app's records.
    `id` is required when `end_user` is given; `email` and `display_name` are optional."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SessionRequestError("end_user", "must be an object or null")
    for name in value:
        if name not in END_USER_FIELDS:
            raise SessionRequestError(f"end_user.{str(name)[:64]}", "is not a known field")
    limits = {"id": MAX_END_USER_ID, "email": MAX_EMAIL, "display_name": MAX_DISPLAY_NAME}
    found: dict[str, str] = {}
    for name, limit in limits.items():
        field = value.get(name)
        if field is None:
            continue
        if not isinstance(field, str) or not field.strip():
            raise SessionRequestError(f"end_user.{name}", "must be a non-empty string or null")
        if len(field) > limit or _CONTROL.search(field):
            raise SessionRequestError(
                f"end_user.{name}", f"must be at most {limit} characters, without control "
                "characters",
            )  # fmt: skip
        found[name] = field
    if "id" not in found:
        raise SessionRequestError("end_user.id", "is required when end_user is given")
    if "email" in found and not _EMAIL.fullmatch(found["email"]):
        raise SessionRequestError("end_user.email", "must look like an email address")
    return found
