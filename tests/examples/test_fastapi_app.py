"""examples/fastapi_app end to end: uvicorn serves the app on 127.0.0.1 with tokenlife in
its process; its route calls the fake provider's account API with the token a dependency
gives, refreshed once the old one has expired. A user who isn't connected, or must
reconnect, gets a 409 whose link connects through tokenlife's API and worker."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from yarl import URL

from tests.examples.browser import Browser, Page, browser
from tests.examples.processes import (
    Served,
    Stack,
    app_environment,
    example_settings,
    free_port,
    serving,
)
from tests.fakes.base import Reply
from tests.fakes.generic import FakeGeneric
from tests.support import Fakes
from tokenlife.adapters.keys import Keys

INTEGRATION = "crm"


@dataclass
class FastApiApp:
    served: Served
    stack: Stack

    def url(self, path: str) -> str:
        return self.served.base_url + path


@pytest.fixture(scope="module")
def fastapi_app(
    tokenlife_stack: Stack, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FastApiApp]:
    directory = tmp_path_factory.mktemp("fastapi-app")
    port = tokenlife_stack.app_ports["fastapi"]
    env = app_environment(
        tokenlife_stack.settings,
        TOKENLIFE_API_RETURN_TO_ALLOWED=f"http://127.0.0.1:{port}/",
        EXAMPLE_INTEGRATION=INTEGRATION,
        EXAMPLE_ACCOUNT_URL=f"{fakes.generic.base_url}/user",
    )
    command = [sys.executable, "-m", "uvicorn", "fastapi_app.main:app",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serving(command, env, port, directory / "uvicorn.log", ready="/openapi.json") as served:
        yield FastApiApp(served, tokenlife_stack)


@pytest.fixture(scope="module")
def fastapi_app_issuer_down(
    tokenlife_stack: Stack, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FastApiApp]:
    """The app with one integration whose OIDC issuer never answers: it opens (the others
    would work), and that integration stays unavailable (IntegrationUnavailableError)."""
    directory = tmp_path_factory.mktemp("fastapi-issuer-down")
    port = free_port()
    lost = f"""[integrations.lost]
provider = "custom"
issuer = "http://127.0.0.1:{free_port()}"
client_id = "lost-client"
client_secret = "lost-secret"
redirect_uri = "http://127.0.0.1:{port}/oauth/callback"
"""
    own = example_settings(tokenlife_stack.settings, "issuer-down", lost, directory)
    env = app_environment(own, EXAMPLE_INTEGRATION="lost",
                          EXAMPLE_ACCOUNT_URL=f"{fakes.generic.base_url}/user")  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "fastapi_app.main:app",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serving(command, env, port, directory / "uvicorn.log", ready="/openapi.json") as served:
        yield FastApiApp(served, tokenlife_stack)


@pytest.fixture
async def user(fastapi_app: FastApiApp, fakes: Fakes) -> AsyncIterator[tuple[Browser, str]]:
    """A browser whose user the app takes as signed in (its stand-in cookie); the user id."""
    user_id = "ada-" + uuid.uuid4().hex[:8]
    async with browser(fakes.generic.base_url) as b:
        b.session.cookie_jar.update_cookies({"user_id": user_id}, URL(fastapi_app.url("/")))
        yield b, user_id


async def connect(b: Browser, link: str, user_id: str) -> Page:
    """The user follows the app's connect link and consents at the provider."""
    page = await b.get(link, at_provider={"login_hint": user_id})
    assert page.status == 200, page.text
    return page


def family_of(fake: FakeGeneric, user_id: str) -> str:
    """The refresh-token family the fake started when the user consented."""
    with fake.lock:
        (family,) = [code for code, f in fake.families.items() if f.grant.user == user_id]
    return family


def expire(fake: FakeGeneric, user_id: str) -> None:
    """At the provider, the user's access tokens stop working."""
    with fake.lock:
        for token in [t for t, user in fake.access_users.items() if user == user_id]:
            del fake.access_users[token]


async def lapse(redis: Redis, app: FastApiApp, fake: FakeGeneric, user_id: str) -> None:
    """What the passing of an hour does: the access token has expired, at the provider
    and by the expiry tokenlife stored."""
    expire(fake, user_id)
    keys = Keys(app.stack.settings.key_prefix, app.stack.settings.redis_shards)
    await redis.hset(keys.connection(INTEGRATION, user_id), "expires_at", repr(time.time() - 5))


async def test_a_user_not_connected_gets_a_link_that_connects_then_the_api_answers(
    fastapi_app: FastApiApp, user: tuple[Browser, str], fakes: Fakes
) -> None:
    b, user_id = user

    refused = await b.get(fastapi_app.url("/account"))
    assert refused.status == 409, refused.text
    detail = refused.json()["detail"]  # type: ignore[index]
    assert detail == {"error": "reconnect", "reason": "not connected",
                      "connect_url": fastapi_app.url(f"/connect/{INTEGRATION}")}  # fmt: skip

    page = await connect(b, detail["connect_url"], user_id)
    api = fastapi_app.stack.api.base_url
    assert [hop.split("?")[0] for hop in page.hops] == [
        fastapi_app.url(f"/connect/{INTEGRATION}"), f"{api}/connect/{INTEGRATION}",
        f"{fakes.generic.base_url}/authorize", f"{api}/oauth/callback",
        fastapi_app.url("/connected"),
    ]  # fmt: skip
    assert "<h1>Connection: active</h1>" in page.text
    assert "<dt>outcome<dd>refreshable" in page.text and "<dt>status<dd>active" in page.text

    answer = await b.get(fastapi_app.url("/account"))
    assert answer.status == 200, answer.text
    account = answer.json()["account"]  # type: ignore[index]
    assert account["login"] == user_id  # the provider knew the token as the user's
    assert fakes.generic.refreshes(family_of(fakes.generic, user_id)) == 0


async def test_an_expired_token_is_refreshed_before_the_route_uses_it(
    fastapi_app: FastApiApp, user: tuple[Browser, str], fakes: Fakes, redis: Redis
) -> None:
    b, user_id = user
    await connect(b, fastapi_app.url(f"/connect/{INTEGRATION}"), user_id)
    assert (await b.get(fastapi_app.url("/account"))).status == 200
    family = family_of(fakes.generic, user_id)

    await lapse(redis, fastapi_app, fakes.generic, user_id)
    answer = await b.get(fastapi_app.url("/account"))

    assert answer.status == 200, answer.text
    assert answer.json()["account"]["login"] == user_id  # type: ignore[index]
    assert fakes.generic.refreshes(family) == 1
    again = await b.get(fastapi_app.url("/account"))  # the refreshed token is kept
    assert again.status == 200 and fakes.generic.refreshes(family) == 1


async def test_a_refused_refresh_is_a_409_with_a_reconnect_link(
    fastapi_app: FastApiApp, user: tuple[Browser, str], fakes: Fakes, redis: Redis
) -> None:
    b, user_id = user
    await connect(b, fastapi_app.url(f"/connect/{INTEGRATION}"), user_id)
    family = family_of(fakes.generic, user_id)
    fakes.generic.script_refresh(family, Reply(status=400, body=b'{"error": "invalid_grant"}'))

    await lapse(redis, fastapi_app, fakes.generic, user_id)
    answer = await b.get(fastapi_app.url("/account"))

    assert answer.status == 409, answer.text
    detail = answer.json()["detail"]  # type: ignore[index]
    assert detail["error"] == "reconnect" and "invalid_grant" in detail["reason"]
    assert detail["connect_url"] == fastapi_app.url(f"/connect/{INTEGRATION}")
    # Reconnecting brings the route back, with a grant of its own.
    page = await connect(b, detail["connect_url"], user_id)
    assert "<h1>Connection: active</h1>" in page.text
    assert (await b.get(fastapi_app.url("/account"))).status == 200


async def test_a_provider_that_is_down_is_a_503_with_retry_after(
    fastapi_app: FastApiApp, user: tuple[Browser, str], fakes: Fakes, redis: Redis
) -> None:
    b, user_id = user
    await connect(b, fastapi_app.url(f"/connect/{INTEGRATION}"), user_id)
    family = family_of(fakes.generic, user_id)
    fakes.generic.script_refresh(family, Reply(status=503, body=b"down for maintenance"))

    await lapse(redis, fastapi_app, fakes.generic, user_id)
    answer = await b.get(fastapi_app.url("/account"))

    assert answer.status == 503, answer.text
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after >= 1
    assert answer.json()["detail"] == {"error": "unavailable", "retry_after": retry_after}  # type: ignore[index]


async def test_without_a_signed_in_user_nothing_is_asked(fastapi_app: FastApiApp) -> None:
    async with browser() as stranger:
        assert (await stranger.get(fastapi_app.url("/account"))).status == 401
        assert (await stranger.get(fastapi_app.url(f"/connect/{INTEGRATION}"))).status == 401


async def test_back_at_the_app_while_the_issuer_is_away_is_a_503_to_retry(
    fastapi_app_issuer_down: FastApiApp, fakes: Fakes
) -> None:
    app = fastapi_app_issuer_down
    async with browser(fakes.generic.base_url) as b:
        b.session.cookie_jar.update_cookies({"user_id": "ada"}, URL(app.url("/")))
        page = await b.get(app.url("/connected?integration=lost&outcome=refreshable"))

    assert page.status == 503, page.text
    assert page.headers["Retry-After"].isdigit()
