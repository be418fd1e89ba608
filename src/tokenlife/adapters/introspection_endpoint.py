"""POST to an RFC 7662 introspection endpoint, with the token endpoint's limits."""

from __future__ import annotations

import aiohttp

from tokenlife.adapters.token_endpoint import post_form
from tokenlife.core.grants import TokenRequest
from tokenlife.core.introspection import Introspection, parse_introspection_response
from tokenlife.errors import ServerError


async def post_introspection_request(
    session: aiohttp.ClientSession, request: TokenRequest, timeout: float
) -> Introspection:
    """The server's answer about the token; TransientError when it can't be reached or
    fails (5xx), InvalidResponseError when its answer is unusable."""
    answer = await post_form(session, request, timeout, "introspection endpoint")
    if answer.status >= 500:
        raise ServerError(answer.status)
    return parse_introspection_response(answer.status, answer.body)
