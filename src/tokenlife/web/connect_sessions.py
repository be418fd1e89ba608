"""POST /api/connect-sessions: an app, holding an API key, asks for a one-time link that
sends one user through the consent screen for one connection (issue 9: without it, anyone
who knew a connection id could bind their own account to it)."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from tokenlife.adapters.connect_sessions import ConnectSessions
from tokenlife.core.connect_links import connect_link as connect_link  # its old home
from tokenlife.core.connect_session import SessionRequestError, parse_session_request
from tokenlife.runtime import Runtime
from tokenlife.services.connect_session_issue import issue_connect_session
from tokenlife.web.auth import ApiKey
from tokenlife.web.problems import problem

log = logging.getLogger(__name__)


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
    try:
        issued = await issue_connect_session(wanted, integration, sessions, allowed, time.time())
    except SessionRequestError as exc:
        return problem(400, "bad_request", str(exc), field=exc.field)
    log.info("connect session created for %s/%s", integration.name, wanted.connection_id)
    return web.json_response(issued.as_json(), status=201)
