"""POST /api/connect-sessions: an app, holding an API key, asks for a one-time link that
sends one user through the consent screen for one connection (issue 9: without it, anyone
who knew a connection id could bind their own account to it)."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from aiohttp import web

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.core.connect_session import SessionRequestError, parse_session_request
from tokenlife.core.events import iso8601
from tokenlife.core.integration import Integration
from tokenlife.runtime import Runtime
from tokenlife.web.auth import ApiKey
from tokenlife.web.connect import SESSION_PARAMETER, allowed_return_to
from tokenlife.web.problems import problem

log = logging.getLogger(__name__)
CALLBACK_PATH = "/oauth/callback"


async def create_session(
    request: web.Request, runtime: Runtime, sessions: ConnectSessions, key: ApiKey
) -> web.Response:
    try:
        # Bytes, not text(): a bogus charset in Content-Type must be a 400, not a 500.
        body = json.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:  # a chunked body has no Content-Length to refuse
        return problem(413, "too_large", "the request body is too large")
    except (ValueError, RecursionError):
        return problem(400, "bad_request", "body: must be a JSON object", field="body")
    try:
        wanted = parse_session_request(body)
    except SessionRequestError as exc:
        return problem(400, "bad_request", str(exc), field=exc.field)
    if not key.allows(wanted.integration):
        return problem(
            403, "forbidden", f"this API key may not use integration {wanted.integration!r}"
        )
    integration = runtime.exchange.integration(wanted.integration)  # 404 for an unknown one
    allowed = runtime.config.settings.api_return_to_allowed
    if wanted.return_to is not None and not allowed_return_to(wanted.return_to, allowed):
        return problem(
            400, "bad_request",
            "return_to: not under a prefix of TOKENLIFE_API_RETURN_TO_ALLOWED",
            field="return_to",
        )  # fmt: skip
    token, session = await sessions.create(wanted, time.time())
    log.info("connect session created for %s/%s", integration.name, wanted.connection_id)
    return web.json_response(
        {
            "token": token,
            "url": connect_link(integration, token),
            "expires_at": iso8601(session.expires_at),
        },
        status=201,
    )


def connect_link(integration: Integration, token: str) -> str:
    """The /connect link on the host that serves the integration's redirect_uri: the
    browser-binding cookie /connect sets must reach the callback, so both have to be on
    one host. A redirect_uri ending in /oauth/callback under a path prefix keeps it."""
    parts = urlsplit(integration.redirect_uri)
    prefix = parts.path.removesuffix(CALLBACK_PATH) if parts.path.endswith(CALLBACK_PATH) else ""
    path = f"{prefix}/connect/{quote(integration.name, safe='')}"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode({SESSION_PARAMETER: token}), ""))
