"""examples/django_app end to end: Django's runserver serves the app on 127.0.0.1 with
tokenlife in its process (the sync facade); a signed-in user connects at the fake Google,
which sends the browser back to the app's own callback, and the page says how it went."""

from __future__ import annotations

import html
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.examples.browser import Browser, browser
from tests.examples.processes import Served, app_environment, example_settings, free_port, serving
from tests.support import Fakes
from tokenlife.errors import UnknownConnectionError
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

CLIENT_ID, CLIENT_SECRET = "django-example", "django-example-secret"


@dataclass
class DjangoApp:
    served: Served
    settings: Settings  # the app's TOKENLIFE_* as Settings
    provider: str

    def url(self, path: str) -> str:
        return self.served.base_url + path


def integrations(google: str, callback: str) -> str:
    """A Google Drive integration as it should be, and the same declared `custom`, the way
    a generic OAuth client is often set up: Google then gives no refresh token."""
    body = f'''client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{callback}"
authorize_url = "{google}/o/oauth2/v2/auth"
token_url = "{google}/token"
scopes = ["openid", "https://www.googleapis.com/auth/drive.readonly"]
'''
    return f'[integrations.drive]\nprovider = "google"\n{body}\n' + (
        f'[integrations.drive-as-custom]\nprovider = "custom"\n{body}'
    )


@pytest.fixture(scope="module")
def django_app(
    settings: Settings, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DjangoApp]:
    directory = tmp_path_factory.mktemp("django-app")
    port = free_port()
    callback = f"http://127.0.0.1:{port}/oauth/callback/"
    fakes.google.register(CLIENT_ID, CLIENT_SECRET, callback)
    own = example_settings(
        settings, "django", integrations(fakes.google.base_url, callback), directory
    )
    env = app_environment(
        own, DJANGO_SETTINGS_MODULE="django_app.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )  # fmt: skip
    command = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serving(command, env, port, directory / "django.log", ready="/login/") as served:
        yield DjangoApp(served, own, fakes.google.base_url)


@pytest.fixture
async def tl(django_app: DjangoApp) -> AsyncIterator[Tokenlife]:
    """tokenlife as the app sees it, to check what it stored."""
    async with Tokenlife.from_environment(django_app.settings) as instance:
        yield instance


@pytest.fixture
async def user(django_app: DjangoApp) -> AsyncIterator[tuple[Browser, str]]:
    """A browser whose user has signed in to the app; the user's id."""
    user_id = "ada-" + uuid.uuid4().hex[:8]
    async with browser(django_app.provider) as b:
        await sign_in(b, django_app, user_id)
        yield b, user_id


async def sign_in(b: Browser, app: DjangoApp, user_id: str) -> None:
    form = await b.get(app.url("/login/"))
    token = form.text.split("name=csrfmiddlewaretoken value='")[1].split("'")[0]
    data = {"csrfmiddlewaretoken": token, "user_id": user_id}
    signed_in = await b.request("POST", app.url("/login/"), data=data)
    assert signed_in.status == 200 and f"Signed in as {user_id}" in signed_in.text


def text(page_html: str) -> str:
    return html.unescape(page_html)


async def test_a_user_connects_and_the_page_says_the_account_is_connected(
    django_app: DjangoApp, user: tuple[Browser, str], tl: Tokenlife, fakes: Fakes
) -> None:
    b, user_id = user

    page = await b.get(django_app.url("/connect/drive/"), at_provider={"login_hint": user_id})

    assert page.status == 200, page.text
    assert "Your drive account is connected." in page.text
    assert "outcome: refreshable, status: active" in page.text
    # Through Google's consent with what tokenlife adds for it, back to the app's callback.
    at_google = parse_qs(urlsplit(page.hops[1]).query)
    assert page.hops[1].startswith(django_app.provider + "/o/oauth2/v2/auth?")
    assert at_google["access_type"] == ["offline"] and at_google["prompt"] == ["consent"]
    assert at_google["redirect_uri"] == [django_app.url("/oauth/callback/")]
    assert page.url.startswith(django_app.url("/oauth/callback/?"))

    connection = await tl.connection("drive", user_id)
    assert (connection.status, connection.verdict) == ("active", "refreshable")
    assert connection.has_refresh_token
    token = await tl.access_token("drive", user_id)
    assert token.access_token in fakes.google.issued_secrets
    assert token.access_token not in django_app.served.log()


async def test_no_refresh_token_shows_why_and_the_fix(
    django_app: DjangoApp, user: tuple[Browser, str], tl: Tokenlife
) -> None:
    b, user_id = user

    page = await b.get(django_app.url("/connect/drive-as-custom/"))

    assert page.status == 200, page.text
    shown = text(page.text)
    assert "Connected, but it won't stay connected." in shown
    assert "drive-as-custom gave no refresh token" in shown
    assert "outcome: refresh_token_missing, status: degraded" in shown
    assert 'Use provider "google": set provider = "google" in the integration.' in shown
    connection = await tl.connection("drive-as-custom", user_id)
    assert (connection.status, connection.verdict) == ("degraded", "refresh_token_missing")


async def test_a_refused_consent_shows_what_the_provider_said(
    django_app: DjangoApp, user: tuple[Browser, str], tl: Tokenlife
) -> None:
    b, user_id = user

    page = await b.get(django_app.url("/connect/drive/"), at_provider={"deny": "1"})

    assert page.status == 400, page.text
    shown = text(page.text)
    assert "The account could not be connected." in shown
    assert "The answer was: access_denied (The user denied access)." in shown
    assert "outcome: failed" in shown
    assert "Fix:" in shown  # the diagnosis of access_denied names a fix
    with pytest.raises(UnknownConnectionError):
        await tl.connection("drive", user_id)


async def test_a_flow_finished_in_another_browser_is_refused(
    django_app: DjangoApp, user: tuple[Browser, str], tl: Tokenlife
) -> None:
    """Mallory starts a flow for her connection and gets Ada to consent at the provider:
    Ada's browser brings Mallory's state to the callback, which refuses it."""
    ada, _ = user
    mallory_id = "mallory-" + uuid.uuid4().hex[:8]
    async with browser(django_app.provider) as mallory:
        await sign_in(mallory, django_app, mallory_id)
        async with mallory.session.get(
            django_app.url("/connect/drive/"), allow_redirects=False
        ) as started:
            assert started.status == 302
            at_provider = started.headers["Location"]

    page = await ada.get(at_provider)

    assert page.status == 400 and page.url.startswith(django_app.url("/oauth/callback/?"))
    assert "This sign-in was not started in this browser." in page.text
    with pytest.raises(UnknownConnectionError):
        await tl.connection("drive", mallory_id)


async def test_a_flow_started_before_another_user_signed_in_is_refused(
    django_app: DjangoApp, user: tuple[Browser, str], tl: Tokenlife
) -> None:
    """Ada starts a flow, then Bob signs in in the same browser (the session keeps its
    data across cycle_key()): Bob's consent must not become Ada's connection."""
    b, ada_id = user
    async with b.session.get(django_app.url("/connect/drive/"), allow_redirects=False) as started:
        assert started.status == 302
        at_provider = started.headers["Location"]
    bob_id = "bob-" + uuid.uuid4().hex[:8]
    await sign_in(b, django_app, bob_id)

    page = await b.get(at_provider, at_provider={"login_hint": bob_id})

    assert page.status == 400, page.text
    assert "This sign-in was not started in this browser." in page.text
    with pytest.raises(UnknownConnectionError):
        await tl.connection("drive", ada_id)


async def test_connecting_needs_a_signed_in_user_and_a_known_integration(
    django_app: DjangoApp, user: tuple[Browser, str]
) -> None:
    async with browser(django_app.provider) as stranger:
        page = await stranger.get(django_app.url("/connect/drive/"))
    assert page.status == 403 and len(page.hops) == 1
    b, _ = user
    assert (await b.get(django_app.url("/connect/no-such-integration/"))).status == 404
