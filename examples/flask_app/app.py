"""Connect a user's account from Flask through tokenlife's HTTP API (`tokenlife.client`).

`connect` asks tokenlife for a one-time connect session for the signed-in user's
connection and sends the browser to it. tokenlife's own pages take it from there: its
/connect sends the browser to the provider, and its /oauth/callback (the integration's
redirect_uri: this app handles no OAuth callback itself) checks the browser, exchanges
the code (in tokenlife's worker), then sends the browser back to `connected`, the
session's `return_to`, with `integration`, `connection_id`, `outcome` and `status` in the
query. The app holds no tokenlife secret but its API key: no Redis, no encryption keys.
"""

from __future__ import annotations

import math
import os

from flask import Flask, abort, redirect, render_template_string, request, session, url_for
from markupsafe import escape
from werkzeug.wrappers import Response

from tokenlife.client import Client
from tokenlife.errors import TransientError, UnknownIntegrationError, UsageError

app = Flask(__name__)
app.config.from_prefixed_env()  # FLASK_SECRET_KEY signs the session cookie; never in code

# One per process, shared by every thread: where tokenlife's API answers, and a key of
# its TOKENLIFE_API_KEYS.
tokenlife = Client(os.environ["TOKENLIFE_URL"], os.environ["TOKENLIFE_API_KEY"], timeout=10)


def signed_in_user() -> str | None:
    """The signed-in user's id, which is also their connection id. A stand-in for your
    login (Flask-Login's current_user.get_id(), say)."""
    user = session.get("user_id")
    return user if isinstance(user, str) else None


@app.get("/connect/<integration>")
def connect(integration: str) -> Response:
    """The "Connect" button's link. The session is made as the user clicks: a link made
    earlier (in an e-mail) could be spent by a link scanner before the user gets there."""
    user = signed_in_user()
    if user is None:
        abort(403)
    back = url_for("connected", _external=True)  # under TOKENLIFE_API_RETURN_TO_ALLOWED
    try:
        link = tokenlife.create_connect_session(integration, user, return_to=back)
    except UnknownIntegrationError:
        abort(404)
    except TransientError as exc:  # tokenlife (or its Redis) can't be reached right now
        return unavailable(exc)
    return redirect(link.url, 303)


def unavailable(exc: TransientError) -> Response:
    """503 with Retry-After (RFC 9110 §10.2.3): worth asking again soon."""
    answer = Response("tokenlife can't be reached right now; try again in a minute.", 503)
    answer.headers["Retry-After"] = str(math.ceil(exc.retry_after or 5))
    return answer


@app.get("/connected")
def connected() -> str | Response:
    """Where tokenlife sends the browser back. Anyone can write this URL, so its query is
    only shown; what the connection is, tokenlife's API says."""
    user = signed_in_user()
    if user is None:
        abort(403)
    said = {k: request.args.get(k) for k in ("integration", "outcome", "status", "error")}
    try:
        stored = tokenlife.connection(said["integration"] or "", user)
    except UsageError:  # no such integration or connection, or a name it refuses
        stored = None
    except TransientError as exc:  # tokenlife (or the provider's discovery) is away for now
        return unavailable(exc)
    fixes = list((stored.last_alert or {}).get("fixes", [])) if stored else []
    return render_template_string(PAGE, said=said, stored=stored, fixes=fixes)


PAGE = """<!doctype html>
{% if said.outcome == "failed" %}<h1>The account could not be connected.</h1>
<p>The answer was: {{ said.error }}.</p>
{% elif said.outcome == "refresh_token_missing" %}<h1>Connected, but it won't stay connected.</h1>
{% else %}<h1>Your {{ said.integration }} account is connected.</h1>{% endif %}
<p id=said>outcome: {{ said.outcome }}, status: {{ said.status }}</p>
<p id=stored>tokenlife says: {{ stored.status if stored else "not connected" }}</p>
{% if fixes %}<p>Please tell your administrator:</p>
<ol>{% for fix in fixes %}<li>{{ fix }}</li>{% endfor %}</ol>{% endif %}
"""


@app.route("/login", methods=["GET", "POST"])
def login() -> str:
    """A stand-in for your login that signs in whoever is named: never ship it."""
    if request.method == "POST":
        session.clear()
        session["user_id"] = request.form["user_id"]
        return f"Signed in as {escape(session['user_id'])}."
    return "<form method=post><input name=user_id><button>Sign in</button></form>"
