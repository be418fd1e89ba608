"""Connect a user's account from Django views, with tokenlife in this process.

`connect` starts an authorization for the signed-in user's connection and sends the
browser to the provider. The provider sends it back to `callback`, this app's own OAuth
callback (the integration's `redirect_uri` in tokenlife's integrations file; tokenlife's
/oauth/callback is not involved), which checks that this browser and user started the
flow and hands the query to tokenlife: it exchanges the code here, stores the tokens
encrypted in Redis, and says whether the connection will last. The page tells the user,
with what to fix when the provider gave no refresh token.
"""

from __future__ import annotations

import hmac
import math

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_GET, require_http_methods

from tokenlife.errors import TransientError, UnknownIntegrationError
from tokenlife.models import ExchangeResult
from tokenlife.sync import Tokenlife

# One per process, shared by every thread. Its settings are read here, from TOKENLIFE_*;
# Redis, the integrations file and discovery are opened at start-up (wsgi.py).
tokenlife = Tokenlife.from_environment()

# The flow this browser started, kept in its session as {"state", "user"}: the callback
# accepts no other state. Otherwise someone could start a flow for their own connection and
# get another person to finish it at the provider, binding that person's account to their
# connection (RFC 6749 §10.12). tokenlife's own /connect flow checks this with a cookie; a
# flow that ends at the app's callback is the app's to check. The user is kept too: a
# session that changes user (cycle_key() at login keeps its data) must not finish a flow
# started for the one before.
FLOW_STATE = "tokenlife_flow"


def signed_in_user(request: HttpRequest) -> str | None:
    """The signed-in user's id, which is also their connection id. A stand-in for your
    login: with django.contrib.auth it is `str(request.user.pk)` behind @login_required."""
    user = request.session.get("user_id")
    return user if isinstance(user, str) else None


@require_GET
def connect(request: HttpRequest, integration: str) -> HttpResponse:
    """The "Connect" button's link: off to the provider for the signed-in user."""
    user = signed_in_user(request)
    if user is None:
        return page(403, "Sign in first.", "Connecting an account needs a signed-in user.")
    try:
        started = tokenlife.authorize(integration, user)
    except UnknownIntegrationError:
        raise Http404("no such integration") from None
    except TransientError as exc:  # Redis, or the provider's discovery document, is down
        return page(503, "Connecting is not possible right now.", "Try again in a minute.",
                    retry_after=exc.retry_after)  # fmt: skip
    request.session[FLOW_STATE] = {"state": started.state, "user": user}
    return HttpResponseRedirect(started.url)


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """The provider sends the browser back here with `state` and `code` (or `error`)."""
    query = request.GET
    state = query.get("state", "")
    if not started_here(request, state):
        return page(400, "This sign-in was not started in this browser.",
                    "Start connecting the account again from the app.")  # fmt: skip
    try:
        result = tokenlife.exchange_callback(
            state=state, code=query.get("code"), error=query.get("error"),
            error_description=query.get("error_description"), iss=query.get("iss"),
        )  # fmt: skip
    except TransientError as exc:
        # The exchange goes on and is stored; the flow stays in the session, so a reload
        # of this page (the same state) waits for it and shows its outcome.
        return still_connecting(exc.retry_after)
    if not result.final:  # another process is exchanging this state: ask again soon
        return still_connecting(2)
    del request.session[FLOW_STATE]
    return result_page(result)


def started_here(request: HttpRequest, state: str) -> bool:
    """The callback's state is the one this browser's session started, for the user who
    is signed in now."""
    started = request.session.get(FLOW_STATE)
    if not isinstance(started, dict) or not isinstance(started.get("state"), str):
        return False
    user = signed_in_user(request)
    return (
        user is not None
        and started.get("user") == user
        and hmac.compare_digest(state.encode(), started["state"].encode())
    )


def still_connecting(retry_after: float | None) -> HttpResponse:
    return page(503, "Still connecting the account.", "Reload this page in a moment.",
                retry_after=retry_after)  # fmt: skip


def result_page(result: ExchangeResult) -> HttpResponse:
    """What the exchange ended in, in words the user can pass on to an administrator."""
    said = format_html("<p id=outcome>outcome: {}, status: {}</p>", result.outcome,
                       result.status or "none")  # fmt: skip
    if not result.ok:
        steps = [f"{d.get('cause')} Fix: {d.get('fix')}" for d in result.diagnosis]
        reason = result.error or "unknown_error"
        if result.error_description:
            reason += f" ({result.error_description})"
        return page(400, "The account could not be connected.", f"The answer was: {reason}.",
                    steps, said)  # fmt: skip
    if result.outcome == "refresh_token_missing":
        until = result.expires_at.isoformat() if result.expires_at else "soon"
        return page(200, "Connected, but it won't stay connected.",
                    f"{result.integration} gave no refresh token, and the access token lasts "
                    f"only until {until}. Please tell your administrator:",
                    list(result.fixes), said)  # fmt: skip
    return page(200, f"Your {result.integration} account is connected.", "You can go on.",
                list(result.fixes), said)  # fmt: skip


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """A stand-in for your login that signs in whoever is named: never ship it."""
    if request.method == "POST":
        request.session.cycle_key()
        request.session["user_id"] = request.POST["user_id"]
        return page(200, "Signed in.", f"Signed in as {request.session['user_id']}.")
    form = format_html(
        "<form method=post><input type=hidden name=csrfmiddlewaretoken value='{}'>"
        "<input name=user_id><button>Sign in</button></form>", get_token(request),
    )  # fmt: skip
    return page(200, "Sign in", "Your user id:", [], form)


def page(
    status: int,
    heading: str,
    text: str,
    steps: list[str] | None = None,
    extra: str = "",
    *,
    retry_after: float | None = None,
) -> HttpResponse:
    items = format_html_join("", "<li>{}</li>", ((step,) for step in steps or []))
    body = format_html(
        "<!doctype html><title>{}</title><h1>{}</h1><p>{}</p><ol>{}</ol>{}",
        heading, heading, text, items, extra,
    )  # fmt: skip
    response = HttpResponse(body, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(math.ceil(retry_after))
    return response
