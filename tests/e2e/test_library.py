"""The in-process Tokenlife against the fake providers and real Redis, without a worker:
a connect session through the API's /connect, the callback exchanged in-process, a token,
a refresh now, the listing, show and delete, each answer the class the HTTP client gives.
Also its lifetime: opened lazily, once, on one loop; and discovery asked once per
freshness lifetime however often an app opens it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from tests.e2e.browser import browser, consent, open_link, serving
from tests.services.test_discovery_cache import issuer_settings, serve_caching_issuer
from tests.support import Fakes
from tokenlife.errors import (
    ConfigurationError,
    NoRefreshTokenError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.library import Tokenlife
from tokenlife.models import (
    AccessToken,
    Connection,
    ConnectSession,
    Deletion,
    ExchangeResult,
    Integration,
)
from tokenlife.settings import Settings

KEY = "library-api-key-0123456789abcdef"
APP = "https://app.example.com/"


@pytest.fixture
def configured(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": (KEY,), "api_return_to_allowed": (APP,)})


@pytest.fixture
async def api(configured: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The HTTP API over the same Redis: /connect consumes the sessions the library makes,
    and its answers are what the library's must equal."""
    async with serving(configured) as client:
        yield client


async def through_connect_link(
    api: TestClient[Any, Any], session: ConnectSession, user: str
) -> dict[str, str]:
    """A browser opens the link at the API, consents at the provider, and brings back the
    callback's query (to the app's own callback, here)."""
    async with browser() as jar:
        opened = await open_link(jar, api, session.url)
        assert opened.status == 302, opened.status
        return await consent(opened.headers["Location"], login_hint=user)


async def api_json(api: TestClient[Any, Any], method: str, path: str) -> Any:
    response = await api.request(method, path, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_connect_session_to_delete_in_process_answers_as_the_api_does(
    configured: Settings, api: TestClient[Any, Any], fakes: Fakes
) -> None:
    cid = f"lib-{uuid.uuid4().hex[:8]}"
    tl = Tokenlife.from_environment(configured)
    assert "not opened" in repr(tl)
    async with tl:
        session = await tl.create_connect_session(
            "google", cid, return_to=APP + "settings", end_user={"id": "42"}
        )
        assert isinstance(session, ConnectSession)
        assert session.url.startswith("http://127.0.0.1:9/connect/google?session=")
        assert session.token not in repr(session)
        assert 1790 < session.expires_at.timestamp() - time.time() <= 1800

        callback = await through_connect_link(api, session, cid)
        result = await tl.exchange_callback(state=callback["state"], code=callback["code"])
        assert isinstance(result, ExchangeResult) and result.ok, result
        assert (result.integration, result.connection_id) == ("google", cid)
        assert (result.outcome, result.status) == ("refreshable", "active")
        assert result.refresh_token_received and result.return_to == APP + "settings"
        # Again with the same state: the first outcome, the code not sent again.
        assert await tl.exchange_callback(state=callback["state"], code=callback["code"]) == result

        token = await tl.access_token("google", cid)
        assert isinstance(token, AccessToken)
        assert token.access_token in fakes.google.issued_secrets

        refreshed = await tl.refresh("google", cid)
        assert (refreshed.version, refreshed.status) == (2, "active")
        assert fakes.google.refreshes(callback["code"]) == 1
        newer = await tl.get_access_token("google", cid)
        assert newer.access_token != token.access_token

        listed = [c async for c in tl.connections(integration="google", limit=1)]
        assert [c.connection_id for c in listed].count(cid) == 1
        assert [c async for c in tl.connections(integration="google")] == listed
        shown = await tl.connection("google", cid)
        assert shown == next(c for c in listed if c.connection_id == cid)
        # The same class, from the same JSON, as the API answers.
        path = f"/api/connections/google/{cid}"
        assert shown == Connection.from_json(await api_json(api, "GET", path))
        assert [i.name for i in await tl.integrations()] == [
            i["name"] for i in (await api_json(api, "GET", "/api/integrations"))["integrations"]
        ]
        assert all(isinstance(i, Integration) for i in await tl.integrations())

        deletion = await tl.delete("google", cid)
        assert deletion == Deletion(True, True, True, None, None)
        assert fakes.google.families[callback["code"]].revoked
        with pytest.raises(UnknownConnectionError):
            await tl.connection("google", cid)
    assert "closed" in repr(tl)
    with pytest.raises(UsageError, match="closed"):
        await tl.connection("google", cid)


async def test_a_failed_exchange_is_a_result_that_says_why(
    configured: Settings, fakes: Fakes
) -> None:
    async with Tokenlife.from_environment(configured) as tl:
        url = await tl.authorize_url("generic", f"lib-{uuid.uuid4().hex[:8]}")
        callback = await consent(url, deny="1")
        result = await tl.exchange_callback(
            state=callback["state"], error=callback["error"],
            error_description=callback.get("error_description"),
        )  # fmt: skip
        assert not result.ok
        assert (result.outcome, result.error) == ("failed", "access_denied")
        assert result.fixes and result.diagnosis


async def test_refresh_and_connect_sessions_refuse_what_the_api_refuses(
    configured: Settings, fakes: Fakes
) -> None:
    cid = f"lib-{uuid.uuid4().hex[:8]}"
    async with Tokenlife.from_environment(configured) as tl:
        callback = await consent(await tl.authorize_url("generic", cid), login_hint=cid)
        stored = await tl.exchange_callback(state=callback["state"], code=callback["code"])
        assert stored.ok and not stored.refresh_token_received
        # The API's 409 no_refresh_token: the HTTP clients raise the same class.
        with pytest.raises(NoRefreshTokenError, match="no refresh token"):
            await tl.refresh("generic", cid)
        with pytest.raises(UsageError, match="return_to"):
            await tl.create_connect_session("generic", cid, return_to="https://evil.example/")
        with pytest.raises(UsageError, match="connection_id"):
            await tl.create_connect_session("generic", "")
        with pytest.raises(UnknownIntegrationError):
            await tl.create_connect_session("nope", cid)
        with pytest.raises(UsageError, match="status must be one of"):
            await anext(tl.connections(status="happy"))


async def test_nothing_is_opened_until_first_use_and_a_bad_file_fails_each_use(
    settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "integrations.toml"
    broken.write_text("[integrations.x]\nprovider = 'no-such-provider'\n")
    tl = Tokenlife.from_environment(settings.model_copy(update={"integrations_file": broken}))
    with pytest.raises(ConfigurationError, match=r"\[integrations\.x\]"):
        await tl.open()
    with pytest.raises(ConfigurationError):  # not opened: tried again, and said again
        await tl.integrations()
    await tl.aclose()


async def test_concurrent_first_calls_open_it_once(
    settings: Settings, fakes: Fakes, tmp_path: Path
) -> None:
    async with serve_caching_issuer("no-cache") as issuer:  # asked at every open
        tl = Tokenlife.from_environment(issuer_settings(settings, fakes, issuer, tmp_path))
        try:
            found = await asyncio.gather(*(tl.integrations() for _ in range(20)))
            assert all(sorted(i.name for i in names) == ["oidc", "steady"] for names in found)
            assert issuer.asked == 1
        finally:
            await tl.aclose()


async def test_the_awaited_form_of_before_still_opens_it_and_warns(settings: Settings) -> None:
    with pytest.warns(DeprecationWarning, match="drop the `await`"):
        awaited = await Tokenlife.from_environment(settings)
    async with awaited as tl:
        assert "open" in repr(tl) and "not opened" not in repr(tl)
        assert "google" in [i.name for i in await tl.integrations()]


async def test_a_call_that_waits_for_the_open_while_it_is_closed_is_refused(
    settings: Settings,
) -> None:
    tl = Tokenlife.from_environment(settings)
    early = asyncio.ensure_future(tl.integrations())
    await asyncio.sleep(0)  # it has started the open and waits for it
    await tl.aclose()
    with pytest.raises(UsageError, match="closed"):
        await early  # not an answer from the runtime aclose() closed
    assert "closed" in repr(tl)


async def test_authorize_gives_the_state_an_own_callback_must_check(
    configured: Settings, fakes: Fakes
) -> None:
    cid = f"lib-{uuid.uuid4().hex[:8]}"
    async with Tokenlife.from_environment(configured) as tl:
        started = await tl.authorize("generic", cid, now=time.time())
        assert started.state and started.state not in repr(started)
        assert parse_qs(urlsplit(started.url).query)["state"] == [started.state]
        left = started.expires_at.timestamp() - time.time()
        assert 590 < left <= 600
        callback = await consent(started.url, login_hint=cid)
        assert callback["state"] == started.state
        result = await tl.exchange_callback(state=started.state, code=callback["code"])
        assert (result.ok, result.final, result.connection_id) == (True, True, cid)
        assert (await tl.authorize_url("generic", cid)).startswith(started.url.split("?")[0])


def test_the_library_does_not_load_the_web_app() -> None:
    """Importing the library loads none of tokenlife.web (aiohttp.web, the API's routes)."""
    probe = (
        "import sys, tokenlife.library, tokenlife.sync\n"
        "print(sorted(m for m in sys.modules if m.startswith('tokenlife.web')))"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60)  # fmt: skip
    assert shown.stdout.strip() == "[]", shown.stdout


async def test_it_refuses_a_loop_other_than_the_one_it_opened_on(settings: Settings) -> None:
    async with Tokenlife.from_environment(settings) as tl:
        with pytest.raises(UsageError, match="another event loop"):
            await asyncio.to_thread(asyncio.run, tl.integrations())
        assert await tl.integrations()  # still fine on its own


async def test_an_app_opening_one_per_request_asks_the_issuer_once_while_fresh(
    settings: Settings, fakes: Fakes, tmp_path: Path
) -> None:
    async with serve_caching_issuer("public, max-age=600") as issuer:
        configured = issuer_settings(settings, fakes, issuer, tmp_path)
        for n in range(5):
            async with Tokenlife.from_environment(configured) as tl:
                url = await tl.authorize_url("oidc", f"request-{n}")
                assert url.startswith(f"{issuer.url}/authorize?")
        assert issuer.asked == 1


async def test_connections_follows_the_cursor_across_pages(configured: Settings) -> None:
    cids = [f"page-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    async with Tokenlife.from_environment(configured) as tl:
        for cid in cids:
            callback = await consent(await tl.authorize_url("generic-7d", cid), login_hint=cid)
            assert (await tl.exchange_callback(state=callback["state"], code=callback["code"])).ok
        listed = [c.connection_id async for c in tl.connections(integration="generic-7d", limit=2)]
    assert len(listed) == len(set(listed)) >= 3 and set(cids) <= set(listed)
