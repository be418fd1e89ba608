"""Attacks on the connect flow against the running API (issue 9 §1, §6): no account bound
without the app's say-so, no flow finished in a browser that didn't start it, no code
accepted for another flow, and odd input a 4xx, never a 500."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from yarl import URL

from tests.e2e.browser import browser, consent, land, new_session, open_link, serving
from tests.support import Fakes, WorkerHandle, event_types, events_for, stored_connection
from tokenlife.adapters.keys import Keys
from tokenlife.core.connect_session import token_hash
from tokenlife.errors import UnknownConnectionError
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

KEY = "attacks-full-key-0123456789"
LIMITED = "attacks-generic-key-0123456789"


@pytest.fixture
async def client(settings: Settings, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(
        settings,
        api_keys=(KEY, f"{LIMITED}:generic"),
        api_return_to_allowed=("https://app.example.com/",),
    ) as test_client:
        yield test_client


def new_id() -> str:
    return "atk-" + uuid.uuid4().hex[:10]


async def pending_states(redis: Redis, settings: Settings) -> set[str]:
    keys = Keys(settings.key_prefix, settings.redis_shards)
    return {k async for k in redis.scan_iter(keys.pattern("pending"))}


async def assert_not_connected(tl: Tokenlife, integration: str, cid: str) -> None:
    with pytest.raises(UnknownConnectionError):
        await stored_connection(tl, integration, cid)


async def start(
    user: aiohttp.ClientSession, client: TestClient[Any, Any], integration: str, cid: str
) -> aiohttp.ClientResponse:
    """The app makes a session; the user's browser opens its link (302 to the provider)."""
    opened = await open_link(
        user, client, (await new_session(client, KEY, integration, cid))["url"]
    )
    assert opened.status == 302
    return opened


# -- /connect without a valid session ---------------------------------------------------


async def session_token(
    case: str, client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> str | None:
    """The `session` a case presents at /connect/google."""
    if case == "none":
        return None
    if case == "forged":
        return secrets.token_urlsafe(32)
    if case == "expired":
        token = (await new_session(client, KEY, "google", new_id()))["token"]
        # What the TTL does after 30 minutes.
        keys = Keys(settings.key_prefix, settings.redis_shards)
        await redis.delete(keys.connect_session("google", token_hash(token)))
        return str(token)
    if case == "used":
        answer = await new_session(client, KEY, "google", new_id())
        async with browser() as first:
            assert (await open_link(first, client, answer["url"])).status == 302
        return str(answer["token"])
    if case == "other-integration":
        return str((await new_session(client, KEY, "generic", new_id()))["token"])
    if case == "the-hash":  # what a leaked Redis would show
        token = (await new_session(client, KEY, "google", new_id()))["token"]
        return token_hash(token)
    return case  # odd bytes, as given


@pytest.mark.parametrize(
    "case",
    ["none", "forged", "expired", "used", "other-integration", "the-hash", "",
     "a" * 1000, "x" * 20 + "\x00", "../" * 10, "ünïcödé-" * 4, "%00" * 10],
)  # fmt: skip
async def test_connect_without_a_valid_session_is_a_401_page_and_stores_nothing(
    case: str, client: TestClient[Any, Any], redis: Redis, settings: Settings
) -> None:
    token = await session_token(case, client, redis, settings)
    before = await pending_states(redis, settings)
    # The old form (connection_id and return_to in the query) is no way in either.
    query = {"connection_id": "victim", "return_to": "https://app.example.com/x"}
    if token is not None:
        query["session"] = token
    async with browser() as attacker:
        response = await attacker.get(
            client.make_url("/connect/google").with_query(query), allow_redirects=False
        )
        text = await response.text()
        assert response.status == 401, text
        assert response.content_type == "text/html"
        assert "ask it for a new connect link" in text
        assert response.headers["WWW-Authenticate"].startswith("ConnectSession")
        assert "Set-Cookie" not in response.headers
    assert await pending_states(redis, settings) == before


async def test_a_token_tried_at_another_integration_stays_usable_at_its_own(
    client: TestClient[Any, Any],
) -> None:
    answer = await new_session(client, KEY, "generic", new_id())
    async with browser() as attacker:
        url = client.make_url("/connect/google").with_query(session=answer["token"])
        async with attacker.get(url, allow_redirects=False) as refused:
            assert refused.status == 401
    async with browser() as user:
        assert (await open_link(user, client, answer["url"])).status == 302


# -- the callback: state and browser binding --------------------------------------------


async def test_the_callback_refuses_a_browser_that_did_not_start_the_flow(
    client: TestClient[Any, Any], worker: WorkerHandle, tl: Tokenlife, fakes: Fakes,
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    """The link holder opens it, then gets the provider URL consented to elsewhere: the
    code comes back in a browser without the binding cookie (RFC 6749 §10.12)."""
    cid = new_id()
    answer = await new_session(client, KEY, "generic", cid)
    async with browser() as holder, browser() as victim, browser() as other:
        opened = await open_link(holder, client, answer["url"])
        query = await consent(opened.headers["Location"], login_hint="victim")
        state = query["state"]

        # No cookie at all.
        status, _, body = await land(victim, client, query)
        assert status == 400 and "started in another browser" in body
        # A cookie of the right name with another browser's value: its own flow's nonce.
        own = await start(other, client, "generic", new_id())
        nonce = next(iter(own.cookies.values())).value
        name = next(iter(opened.cookies))
        victim.cookie_jar.update_cookies({name: nonce}, URL(str(client.make_url("/"))))
        status, _, body = await land(victim, client, query)
        assert status == 400 and "started in another browser" in body
        await assert_not_connected(tl, "generic", cid)
        pending = Keys(settings.key_prefix, settings.redis_shards).pending(state)
        assert pending in await pending_states(redis, settings)

        # The browser that opened the link still finishes it.
        status, headers, body = await land(holder, client, query)
        assert status == 200, body
        assert (await stored_connection(tl, "generic", cid)).version == 1
        # And the binding cookie is dropped once used.
        assert "Max-Age=0" in headers.get("Set-Cookie", "")


async def test_a_forged_state_is_refused_and_a_replayed_one_shows_the_first_result(
    client: TestClient[Any, Any], worker: WorkerHandle, tl: Tokenlife, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    cid = new_id()
    answer = await new_session(client, KEY, "generic", cid)
    async with browser() as user:
        opened = await open_link(user, client, answer["url"])
        query = await consent(opened.headers["Location"], login_hint=cid)

        forged = {**query, "state": secrets.token_urlsafe(32)}
        status, _, body = await land(user, client, forged)
        assert status == 400 and "expired or was already used" in body

        status, _, first = await land(user, client, query)
        assert status == 200
        # Replayed: the first exchange's outcome is shown again; nothing is sent or stored.
        status, _, replayed = await land(user, client, query)
        assert (status, replayed) == (200, first)
    assert (await stored_connection(tl, "generic", cid)).version == 1
    assert (await event_types(redis, settings, cid)).count("connection.authorized") == 1


async def test_a_state_paired_with_another_integrations_code_stores_nothing(
    client: TestClient[Any, Any], worker: WorkerHandle, tl: Tokenlife,
) -> None:  # fmt: skip
    """Google's state with generic's code: the code goes to Google, which never issued it."""
    generic_cid, google_cid = new_id(), new_id()
    async with browser() as user:
        generic = await start(user, client, "generic", generic_cid)
        google = await start(user, client, "google", google_cid)
        generic_query = await consent(generic.headers["Location"], login_hint=generic_cid)
        google_query = await consent(google.headers["Location"], login_hint=google_cid)

        crossed = {"state": google_query["state"], "code": generic_query["code"]}
        status, _, body = await land(user, client, crossed)
        assert status == 400 and "could not be connected" in body
        await assert_not_connected(tl, "google", google_cid)

        status, _, _ = await land(user, client, generic_query)  # its own pair still works
        assert status == 200
    assert (await stored_connection(tl, "generic", generic_cid)).version == 1


async def test_a_code_injected_into_another_flow_fails_pkce(
    client: TestClient[Any, Any], worker: WorkerHandle, tl: Tokenlife, fakes: Fakes,
) -> None:  # fmt: skip
    """A code from flow A with flow B's state (same integration, same browser): tokenlife
    sends B's PKCE verifier, the provider checks it against A's challenge and refuses."""
    a, b = new_id(), new_id()
    async with browser() as user:
        flow_a = await start(user, client, "generic", a)
        flow_b = await start(user, client, "generic", b)
        query_a = await consent(flow_a.headers["Location"], login_hint=a)
        query_b = await consent(flow_b.headers["Location"], login_hint=b)

        status, _, body = await land(user, client, {"state": query_b["state"],
                                                    "code": query_a["code"]})  # fmt: skip
        assert status == 400 and "PKCE verification failed" in body
        await assert_not_connected(tl, "generic", b)

        status, _, _ = await land(user, client, query_a)  # A's code was not spent
        assert status == 200
    assert (await stored_connection(tl, "generic", a)).version == 1


async def test_openid_stripped_from_the_authorization_url_binds_no_other_account(
    client: TestClient[Any, Any], worker: WorkerHandle, tl: Tokenlife, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    """alice's connection; a reconnect link whose user deletes `openid` from the provider
    URL before consenting as mallory (the fake then issues no ID token): refused, and so is
    mallory's next reconnect with `openid`, since alice is still bound."""
    cid = new_id()
    async with browser() as user:
        opened = await start(user, client, "google", cid)
        status, _, _ = await land(user, client, await consent(opened.headers["Location"],
                                                              login_hint="alice"))  # fmt: skip
        assert status == 200
    before = await stored_connection(tl, "google", cid)
    assert (before.subject, before.version) == ("alice", 1)

    async with browser() as user:
        opened = await start(user, client, "google", cid)
        location = URL(opened.headers["Location"])
        scope = " ".join(s for s in location.query["scope"].split() if s != "openid")
        stripped = str(location.update_query(scope=scope))
        assert "openid" not in URL(stripped).query["scope"]
        status, _, body = await land(user, client, await consent(stripped,
                                                                 login_hint="mallory"))  # fmt: skip
        assert status == 400 and "could not be connected" in body

    async with browser() as user:
        opened = await start(user, client, "google", cid)
        status, _, body = await land(user, client, await consent(opened.headers["Location"],
                                                                 login_hint="mallory"))  # fmt: skip
        assert status == 400 and "could not be connected" in body

    after = await stored_connection(tl, "google", cid)
    assert (after.subject, after.version) == ("alice", 1)
    failed = [d["error"] for t, d in await events_for(redis, settings, cid)
              if t == "exchange.failed"]  # fmt: skip
    assert failed == ["invalid_id_token", "subject_mismatch"]


# -- odd input ----------------------------------------------------------------------------

ODD_REQUESTS = [
    ("GET", "/connect/..%2f..%2fetc%2fpasswd?session=" + "a" * 43),
    ("GET", "/connect/..?session=" + "a" * 43),
    ("GET", "/connect/%00?session=" + "a" * 43),
    ("GET", "/connect/%C3%BCnic%C3%B6de?session=" + "a" * 43),
    ("GET", "/connect/%E2%80%AEelgoog?session=x"),
    ("GET", "/connect/google%0d%0aSet-Cookie:%20a=b?session=x"),
    ("GET", "/connect/" + "a" * 1000 + "?session=x"),
    ("GET", "/connect/google?session=%ff%fe" + "a" * 40),
    ("GET", "/connect/google?session=a&session=b"),
    ("GET", "/api/connections/..%2f..%2f/x"),
    ("GET", "/api/connections/google/%00"),
    ("GET", "/api/connections/google/%ED%A0%80"),  # an encoded lone surrogate
    ("GET", "/api/connections/google/" + "a" * 1000),
    ("POST", "/api/connections/google/..%2fother/token"),
    ("DELETE", "/api/connections/google/%E2%80%AE"),
    ("GET", "/api/connections?integration=%00&limit=1"),
    ("GET", "/oauth/callback?state=%00&code=x"),
    ("GET", "/oauth/callback?state=" + "s" * 1000 + "&code=x"),
    ("GET", "/oauth/callback?state=%ED%A0%80" + "s" * 40 + "&code=x"),
]


@pytest.mark.parametrize(("method", "path"), ODD_REQUESTS)
async def test_odd_bytes_in_ids_are_a_4xx_never_a_500(
    client: TestClient[Any, Any], worker: WorkerHandle, method: str, path: str
) -> None:
    url = URL(str(client.make_url("/")).rstrip("/") + path, encoded=True)  # sent as written
    async with browser() as raw:
        response = await raw.request(
            method, url, headers={"Authorization": f"Bearer {KEY}"}, allow_redirects=False
        )
        text = await response.text()
    assert 400 <= response.status < 500, (response.status, text[:300])
    assert "Traceback" not in text
    # JSON from the API, a page for browsers; the router's own 404 is plain text.
    assert response.content_type in ("application/json", "text/html", "text/plain")


@pytest.mark.parametrize(
    ("integration", "connection_id", "key", "status"),
    [
        ("../google", "u1", KEY, 404),
        ("google\x00", "u1", KEY, 404),
        ("g" * 1000, "u1", KEY, 404),
        ("../generic", "u1", LIMITED, 403),
        ("google", "../../x", KEY, 400),
        ("google", "u1\x00", KEY, 400),
        ("google", "ünïcode", KEY, 400),
        ("google", "u" * 1000, KEY, 400),
        ("google", "u1\r\nX-Injected: 1", KEY, 400),
    ],
)  # fmt: skip
async def test_odd_ids_in_a_session_request_are_refused(
    client: TestClient[Any, Any], integration: str, connection_id: str, key: str, status: int,
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    response = await client.post(
        "/api/connect-sessions",
        json={"integration": integration, "connection_id": connection_id},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status == status
    assert response.content_type == "application/json"
    assert "X-Injected" not in response.headers


async def test_an_oversize_body_is_a_413(client: TestClient[Any, Any]) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    big = b'{"integration": "google", "connection_id": "u1", "return_to": "' + b"x" * 200_000
    response = await client.post("/api/connect-sessions", data=big + b'"}', headers=headers)
    assert response.status == 413 and (await response.json())["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length to refuse early
        for _ in range(50):
            yield b" " * 4096

    response = await client.post("/api/connect-sessions", data=chunks(), headers=headers)
    assert response.status == 413 and (await response.json())["error"] == "too_large"


@pytest.mark.parametrize(
    "return_to",
    [
        "https://app.example.com/done\r\nSet-Cookie: session=evil",
        "https://app.example.com/done\nLocation: https://evil.example/",
        "https://app.example.com/\x00",
        "javascript:alert(document.cookie)",
        "JavaScript://app.example.com/%0Aalert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "https://app.example.com.evil.io/done",
        "https://app.example.com@evil.io/done",
        "https://evil.io\\@app.example.com/",
        "https://app.example.com\\.evil.io/",
        "https://\u0430pp.example.com/done",  # a Cyrillic a (U+0430)
        "//app.example.com/done",
        "http://app.example.com/done",
    ],
)
async def test_return_to_cannot_inject_headers_or_leave_the_allow_list(
    client: TestClient[Any, Any], return_to: str, redis: Redis, settings: Settings
) -> None:
    before = {k async for k in redis.scan_iter(f"{settings.key_prefix}:connect-session:*")}
    response = await client.post(
        "/api/connect-sessions",
        json={"integration": "google", "connection_id": "u1", "return_to": return_to},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    answer = await response.json()
    assert response.status == 400 and answer["field"] == "return_to", answer
    assert "Set-Cookie" not in response.headers and "evil" not in response.headers.get(
        "Location", ""
    )
    after = {k async for k in redis.scan_iter(f"{settings.key_prefix}:connect-session:*")}
    assert after == before


# -- secrets at rest and in logs ---------------------------------------------------------


async def test_the_session_token_and_binding_nonce_are_nowhere_in_redis_or_the_logs(
    client: TestClient[Any, Any], worker: WorkerHandle, tl: Tokenlife, redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    cid = new_id()
    answer = await new_session(client, KEY, "generic", cid, end_user={"id": "7"})
    token = answer["token"]
    async with browser() as user:
        opened = await open_link(user, client, answer["url"])
        nonce = next(iter(opened.cookies.values())).value
        query = await consent(opened.headers["Location"], login_hint=cid)
        # Everything at rest while the flow is half-way, then after it ends.
        assert not await found_in_redis(redis, token, nonce)
        status, _, _ = await land(user, client, query)
        assert status == 200
    assert (await stored_connection(tl, "generic", cid)).version == 1
    assert not await found_in_redis(redis, token, nonce)
    # tokenlife's own records. (aiohttp's access log, which the test server keeps on, logs
    # request lines, query included: `tokenlife api` turns it off; see docs/api.md.)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("tokenlife"))
    assert "connect session created for generic/" + cid in ours  # the logs were captured
    for secret in (token, nonce):
        assert secret not in ours
        assert secret not in worker.log()


async def found_in_redis(redis: Redis, *secrets_: str) -> list[str]:
    """Keys whose name or value holds one of `secrets_`, over every key of the database."""
    found = []
    async for key in redis.scan_iter("*"):
        kind = await redis.type(key)
        if kind == "string":
            values: list[Any] = [await redis.get(key)]
        elif kind == "hash":
            values = list((await redis.hgetall(key)).items())
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "zset":
            values = await redis.zrange(key, 0, -1)
        elif kind == "stream":
            values = list(await redis.xrange(key) or [])
        else:
            values = []
        text = key + repr(values)
        if any(secret in text for secret in secrets_):
            found.append(key)
    return found
