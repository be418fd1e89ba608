"""examples/flask_app end to end: Flask's server serves the app on 127.0.0.1; it makes
connect sessions with tokenlife's HTTP client, and tokenlife's API and worker (processes)
do the rest, at the fake Google, until the browser is back at the app's `return_to`."""

from __future__ import annotations

import html
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.examples.browser import Browser, browser
from tests.examples.processes import (
    API_KEY,
    Served,
    Stack,
    app_environment,
    free_port,
    serving,
)
from tests.support import Fakes


@dataclass
class FlaskApp:
    served: Served
    stack: Stack
    provider: str

    def url(self, path: str) -> str:
        return self.served.base_url + path


@contextmanager
def serve_flask(
    stack: Stack, fakes: Fakes, directory: Path, tokenlife_url: str, port: int
) -> Iterator[FlaskApp]:
    # The app's whole configuration: nothing of tokenlife's settings, only where its API
    # answers and a key; Flask's own secret.
    env = {
        k: v for k, v in app_environment(stack.settings).items() if not k.startswith("TOKENLIFE_")
    }
    env |= {
        "TOKENLIFE_URL": tokenlife_url,
        "TOKENLIFE_API_KEY": API_KEY,
        "FLASK_SECRET_KEY": secrets.token_urlsafe(32),
    }
    command = [sys.executable, "-m", "flask", "--app", "flask_app.app", "run",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serving(command, env, port, directory / "flask.log", ready="/login") as served:
        yield FlaskApp(served, stack, fakes.google.base_url)


@pytest.fixture(scope="module")
def flask_app(
    tokenlife_stack: Stack, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlaskApp]:
    directory = tmp_path_factory.mktemp("flask-app")
    api, port = tokenlife_stack.api.base_url, tokenlife_stack.app_ports["flask"]
    with serve_flask(tokenlife_stack, fakes, directory, api, port) as app:
        yield app


@pytest.fixture(scope="module")
def flask_app_without_tokenlife(
    tokenlife_stack: Stack, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlaskApp]:
    """The same app, its TOKENLIFE_URL a port where nothing answers."""
    directory = tmp_path_factory.mktemp("flask-app-alone")
    nowhere = f"http://127.0.0.1:{free_port()}"
    with serve_flask(tokenlife_stack, fakes, directory, nowhere, free_port()) as app:
        yield app


@pytest.fixture
async def user(flask_app: FlaskApp) -> AsyncIterator[tuple[Browser, str]]:
    """A browser whose user has signed in to the app; the user's id."""
    user_id = "ada-" + uuid.uuid4().hex[:8]
    async with browser(flask_app.provider) as b:
        signed_in = await b.request("POST", flask_app.url("/login"), data={"user_id": user_id})
        assert signed_in.status == 200 and f"Signed in as {user_id}" in signed_in.text
        yield b, user_id


async def test_a_user_connects_through_tokenlife_and_comes_back_to_the_app(
    flask_app: FlaskApp, user: tuple[Browser, str]
) -> None:
    b, user_id = user

    page = await b.get(flask_app.url("/connect/drive"), at_provider={"login_hint": user_id})

    assert page.status == 200, page.text
    api = flask_app.stack.api.base_url
    assert [hop.split("?")[0] for hop in page.hops] == [
        flask_app.url("/connect/drive"), f"{api}/connect/drive",
        f"{flask_app.provider}/o/oauth2/v2/auth", f"{api}/oauth/callback",
        flask_app.url("/connected"),
    ]  # fmt: skip
    assert page.url == flask_app.url(
        f"/connected?integration=drive&connection_id={user_id}&outcome=refreshable&status=active"
    )
    assert "Your drive account is connected." in page.text
    assert "outcome: refreshable, status: active" in page.text
    assert "tokenlife says: active" in page.text


async def test_without_a_refresh_token_the_page_says_why_and_the_fix(
    flask_app: FlaskApp, user: tuple[Browser, str]
) -> None:
    b, _ = user

    page = await b.get(flask_app.url("/connect/drive-as-custom"))

    assert page.status == 200, page.text
    shown = html.unescape(page.text)
    assert "Connected, but it won't stay connected." in shown
    assert "outcome: refresh_token_missing, status: degraded" in shown
    assert "tokenlife says: degraded" in shown
    assert 'Use provider "google": set provider = "google" in the integration.' in shown


async def test_a_refused_consent_comes_back_with_the_error(
    flask_app: FlaskApp, user: tuple[Browser, str]
) -> None:
    b, _ = user

    page = await b.get(flask_app.url("/connect/drive"), at_provider={"deny": "1"})

    assert page.status == 200, page.text
    assert page.url.startswith(flask_app.url("/connected?"))
    assert "The account could not be connected." in page.text
    assert "The answer was: access_denied." in page.text
    assert "tokenlife says: not connected" in page.text


async def test_a_return_url_written_by_hand_changes_nothing(
    flask_app: FlaskApp, user: tuple[Browser, str]
) -> None:
    """The query is only shown: what the connection is, tokenlife says."""
    b, _ = user
    forged = "/connected?integration=drive&outcome=refreshable&status=active"

    page = await b.get(flask_app.url(forged))

    assert "tokenlife says: not connected" in page.text


async def test_connecting_needs_a_signed_in_user_and_a_known_integration(
    flask_app: FlaskApp, user: tuple[Browser, str]
) -> None:
    async with browser(flask_app.provider) as stranger:
        page = await stranger.get(flask_app.url("/connect/drive"))
    assert page.status == 403 and len(page.hops) == 1
    b, _ = user
    assert (await b.get(flask_app.url("/connect/no-such-integration"))).status == 404


async def test_back_at_the_app_while_tokenlife_is_away_is_a_503_to_retry(
    flask_app_without_tokenlife: FlaskApp,
) -> None:
    app = flask_app_without_tokenlife
    async with browser(app.provider) as b:
        await b.request("POST", app.url("/login"), data={"user_id": "ada"})
        page = await b.get(app.url("/connected?integration=drive&outcome=refreshable"))

    assert page.status == 503, page.text
    assert "try again in a minute" in page.text
    assert page.headers["Retry-After"].isdigit()
