"""Call a provider's API as the signed-in user from FastAPI, with a fresh access token from
tokenlife in this process (`tokenlife.Tokenlife`, opened once in the app's lifespan).

`Depends(access_token_for("google-drive"))` gives a route an AccessToken for the current
user's connection, refreshed first when it is about to expire. What tokenlife can't give
becomes the answer an app wants: 409 with a link that reconnects the account when the user
has to connect (again), 503 with Retry-After while the provider can't be reached.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Cookie, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tokenlife import Tokenlife
from tokenlife.errors import (
    ReauthorizationRequiredError,
    TransientError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.models import AccessToken

# The integration (in tokenlife's integrations file) whose API this app calls, and that API.
INTEGRATION = os.environ.get("EXAMPLE_INTEGRATION", "google-drive")
ACCOUNT_URL = os.environ.get(
    "EXAMPLE_ACCOUNT_URL", "https://www.googleapis.com/drive/v3/about?fields=user"
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # One Tokenlife for the app, opened on the server's event loop before it serves: a
    # wrong integrations file or an unreachable Redis stops the start. Settings come from
    # TOKENLIFE_*. Closing lets refreshes in flight be saved.
    async with Tokenlife.from_environment() as tokenlife, httpx.AsyncClient(timeout=10) as http:
        yield {"tokenlife": tokenlife, "http": http}  # request.state.tokenlife, .http


app = FastAPI(lifespan=lifespan)


def current_user(user_id: Annotated[str | None, Cookie()] = None) -> str:
    """The signed-in user's id, which is also their connection id. A stand-in for your
    authentication (a signed session, a JWT): this cookie proves nothing."""
    if not user_id:
        raise HTTPException(401, "sign in first")
    return user_id


def access_token_for(integration: str) -> Callable[..., Awaitable[AccessToken]]:
    """A dependency: a fresh AccessToken for the current user's connection to `integration`."""

    async def fresh_access_token(
        request: Request, user: Annotated[str, Depends(current_user)]
    ) -> AccessToken:
        tokenlife: Tokenlife = request.state.tokenlife
        try:
            return await tokenlife.access_token(integration, user)
        except UnknownConnectionError:
            raise reconnect(request, integration, "not connected") from None
        except ReauthorizationRequiredError as exc:  # refused by the provider, or expired
            raise reconnect(request, integration, exc.reason) from None
        except TransientError as exc:  # the provider or Redis, for now; the worker retries
            retry_after = math.ceil(exc.retry_after or 5)
            raise HTTPException(
                503, {"error": "unavailable", "retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            ) from None  # fmt: skip

    return fresh_access_token


def reconnect(request: Request, integration: str, reason: str) -> HTTPException:
    link = str(request.url_for("connect", integration=integration))
    return HTTPException(409, {"error": "reconnect", "reason": reason, "connect_url": link})


@app.get("/account")
async def account(
    request: Request, token: Annotated[AccessToken, Depends(access_token_for(INTEGRATION))]
) -> dict[str, Any]:
    """The provider's idea of who the user is, asked with the user's own token."""
    http: httpx.AsyncClient = request.state.http
    headers = {"Authorization": f"{token.token_type} {token.access_token}"}
    answer = await http.get(ACCOUNT_URL, headers=headers)
    if answer.status_code != 200:
        raise HTTPException(502, {"error": "provider_error", "status": answer.status_code})
    return {"integration": INTEGRATION, "account": answer.json()}


@app.get("/connect/{integration}", name="connect")
async def connect(
    request: Request, integration: str, user: Annotated[str, Depends(current_user)]
) -> RedirectResponse:
    """The reconnect link: a one-time connect session made as the user clicks, and off to
    it. tokenlife's /connect and /oauth/callback (its API, at the integration's
    redirect_uri: this app handles no OAuth callback) do the rest, binding the flow to
    this browser, then send it back to `connected`."""
    tokenlife: Tokenlife = request.state.tokenlife
    back = str(request.url_for("connected"))  # under TOKENLIFE_API_RETURN_TO_ALLOWED
    try:
        session = await tokenlife.create_connect_session(integration, user, return_to=back)
    except UnknownIntegrationError:
        raise HTTPException(404, "no such integration") from None
    except TransientError as exc:
        raise HTTPException(503, "try again in a minute",
                            headers={"Retry-After": str(math.ceil(exc.retry_after or 5))},
                            ) from None  # fmt: skip
    return RedirectResponse(session.url, status_code=303)


@app.get("/connected", name="connected", response_class=HTMLResponse)
async def connected(request: Request, user: Annotated[str, Depends(current_user)]) -> str:
    """Where tokenlife sends the browser back. Anyone can write this URL, so its query is
    only shown; what the connection is, tokenlife says."""
    query = request.query_params
    said = {k: query.get(k, "") for k in ("integration", "outcome", "status", "error")}
    try:
        stored = await request.state.tokenlife.connection(said["integration"], user)
        status = stored.status
    except UsageError:  # no such integration or connection
        status = "not connected"
    except TransientError as exc:  # Redis, or the issuer's discovery, is away for now
        raise HTTPException(503, "try again in a minute",
                            headers={"Retry-After": str(math.ceil(exc.retry_after or 5))},
                            ) from None  # fmt: skip
    shown = "".join(f"<dt>{html.escape(k)}<dd>{html.escape(v)}" for k, v in said.items())
    return f"<!doctype html><h1>Connection: {html.escape(status)}</h1><dl>{shown}</dl>"
