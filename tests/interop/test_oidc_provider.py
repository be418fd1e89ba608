"""tokenlife against a real OpenID Connect server, panva's oidc-provider (conftest.py):
real HTTP both ways, the user's part played through its development login and consent
pages. What the fakes only imitate is checked against the implementation here: which
prompt values it refuses, that it drops offline_access without prompt=consent (OIDC Core
§11) and then issues no refresh token, how it rotates refresh tokens and what it does when
an old one comes back, and its RFC 7662 introspection answer.

`make test-interop` runs them; `make test` leaves them out.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.interop.conftest import OidcServer
from tests.support import events_for, make_due
from tokenlife.adapters.introspection_endpoint import post_introspection_request
from tokenlife.core import events
from tokenlife.core.introspection import introspection_request
from tokenlife.errors import ReauthorizationRequiredError
from tokenlife.preflight import preflight
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.settings import Settings

pytestmark = pytest.mark.interop

# What oidc-provider's devInteractions login form accepts: any login, any password.
USER = {"login": "alice", "password": "any"}
MAX_STEPS = 12
REFRESHED = ["refreshed"]


# -- the user at the server's pages ----------------------------------------------------------


class _Forms(HTMLParser):
    """The page's forms: action, method and the inputs' values (hidden ones included)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            method = found.get("method", "get").lower()
            self.forms.append({"action": found.get("action", ""), "method": method, "fields": {}})
        elif tag in ("input", "button") and self.forms and found.get("name"):
            self.forms[-1]["fields"].setdefault(found["name"], found.get("value", ""))


@dataclass
class Answer:
    """Where the server sent the user back (the callback's query), or the page it stopped
    on; and every page on the way, for the failure message."""

    query: dict[str, str] | None = None
    stopped_at: tuple[int, str] | None = None
    path: list[str] = field(default_factory=list)


async def user_at_server(url: str, redirect_uri: str) -> Answer:
    """Open the authorization URL as a browser would (cookies kept), sign in and consent on
    oidc-provider's development pages, follow every redirect by hand and stop at the one to
    `redirect_uri`."""
    answer = Answer()
    # unsafe: aiohttp keeps no cookies of an IP-address host otherwise.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        method, data = "GET", None
        for _ in range(MAX_STEPS):
            if url.startswith(redirect_uri):
                query = parse_qs(urlsplit(url).query)
                answer.query = {k: v[0] for k, v in query.items()}
                return answer
            async with session.request(method, url, data=data, allow_redirects=False) as r:
                body = await r.text()
                answer.path.append(f"{method} {urlsplit(url).path} -> {r.status}")
                if r.status in (301, 302, 303, 307):
                    url, method, data = urljoin(url, r.headers["Location"]), "GET", None
                    continue
                forms = _Forms()
                forms.feed(body)
                posts = [f for f in forms.forms if f["method"] == "post"]
                if r.status != 200 or not posts:
                    answer.stopped_at = (r.status, body)
                    return answer
                form = posts[0]
                data = dict(form["fields"])
                if "login" in data:  # the login page; the consent page has only hidden fields
                    data.update(USER)
                url, method = urljoin(url, form["action"]), "POST"
    raise AssertionError(f"no answer after {MAX_STEPS} steps: {answer.path}")


# -- tokenlife, configured for the server ----------------------------------------------------


@dataclass(frozen=True)
class Spec:
    scopes: str
    prompt: str | None = None  # None: the custom preset's default, select_account
    rotating: bool = False  # the client whose refresh tokens rotate on every use


SPECS = {
    "default-prompt": Spec('["openid", "offline_access"]'),
    "offline": Spec('["openid", "offline_access"]', "consent"),
    "offline-rotating": Spec('["openid", "offline_access"]', "consent", rotating=True),
    "no-offline-scope": Spec('["openid", "profile"]', "consent"),
    "offline-login-prompt": Spec('["openid", "offline_access"]', "login"),
}


def integration(server: OidcServer, name: str, spec: Spec) -> str:
    client_id = server.rotating_client_id if spec.rotating else server.client_id
    params = (
        "" if spec.prompt is None
        else f'extra_authorization_params = {{ prompt = "{spec.prompt}" }}\n'
    )  # fmt: skip
    return f'''[integrations.{name}]
provider = "custom"
issuer = "{server.issuer}"
introspection_url = "{server.issuer}/token/introspection"
client_id = "{client_id}"
client_secret = "{server.client_secret}"
redirect_uri = "{server.redirect_uri}"
scopes = {spec.scopes}
{params}'''


@dataclass
class Interop:
    server: OidcServer
    runtime: Runtime
    settings: Settings

    async def connect(self, name: str) -> tuple[str, Answer, dict[str, Any]]:
        """A new connection through the server's pages and tokenlife's exchange: its id,
        what the server answered, and the exchange's summary."""
        cid = f"user-{uuid.uuid4().hex[:10]}"
        request = await self.runtime.exchange.start_authorization(name, cid, time.time())
        answer = await user_at_server(request.url, self.server.redirect_uri)
        assert answer.query is not None, f"the server stopped at {answer.stopped_at}"
        assert answer.query.get("state") == request.state
        summary = await self.runtime.exchange.exchange_code(
            state=answer.query["state"], code=answer.query.get("code"),
            error=answer.query.get("error"),
            error_description=answer.query.get("error_description"),
            attempt=ExchangeAttempt(f"interop-{uuid.uuid4()}", 1, True), now=time.time(),
            iss=answer.query.get("iss"),
        )  # fmt: skip
        return cid, answer, summary

    async def refresh(self, name: str, cid: str) -> Counter[str]:
        """A scheduled refresh, now: due at once, claimed and refreshed by the engine as the
        worker's refresh_batch task does."""
        await make_due(self.runtime.redis, self.settings, name, cid)
        engine, outcomes = self.runtime.engine, Counter[str]()
        for batch in await engine.claim_batches(lease_seconds=60, limit=10, batch_size=10):
            outcomes += await engine.refresh_batch(batch, time.time)
        return outcomes

    async def events(self, cid: str) -> dict[str, dict[str, Any]]:
        found = await events_for(self.runtime.redis, self.settings, cid)
        return {kind: data for kind, data in found}


@pytest.fixture
async def interop(oidc_server: OidcServer, redis_db: int, tmp_path: Path) -> AsyncIterator[Interop]:
    path = tmp_path / "integrations.toml"
    path.write_text("\n".join(integration(oidc_server, n, spec) for n, spec in SPECS.items()))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:6379/{redis_db}",
        key_prefix=f"interop-{uuid.uuid4().hex[:8]}",
        encryption_keys=(Fernet.generate_key().decode(),),
        integrations_file=path,
        http_timeout_seconds=5.0,
    )
    async with AsyncExitStack() as stack:
        runtime = await Runtime.open(await load_config(settings))
        stack.push_async_callback(runtime.close)
        yield Interop(oidc_server, runtime, settings)


async def token_request(server: OidcServer, client_id: str, **form: str) -> tuple[int, Any]:
    """The token endpoint asked directly, as tokenlife's `custom` preset authenticates."""
    basic = base64.b64encode(f"{client_id}:{server.client_secret}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.issuer}/token", data=form, headers={"Authorization": f"Basic {basic}"}
        ) as r,
    ):
        return r.status, await r.json()


def codes(findings: list[Any], name: str) -> dict[str, Any]:
    return {f.code: f for f in findings if f.integration == name}


# -- (a) the custom preset's default prompt ---------------------------------------------------


async def test_default_prompt_select_account_is_refused_and_diagnosed(interop: Interop) -> None:
    """The custom preset sends prompt=select_account. oidc-provider supports only none,
    login and consent (it publishes no prompt_values_supported), so it refuses the whole
    authorization request: no login page, an error redirect to the callback."""
    async with aiohttp.ClientSession() as session:
        findings = await preflight(interop.settings, interop.runtime.config.presets, {}, session)
    found = codes(findings, "default-prompt")
    assert found["offline_access_without_consent"].severity == "error"
    assert 'prompt = "consent"' in found["offline_access_without_consent"].fix
    # Nothing in the discovery document tells the preflight that the value is refused.
    assert "prompt_value_unsupported" not in found

    cid, answer, summary = await interop.connect("default-prompt")

    assert answer.query is not None
    assert answer.query["error"] == "invalid_request"
    assert answer.query["error_description"] == "unsupported prompt value requested"
    assert answer.query["iss"] == interop.server.issuer  # RFC 9207, on errors too
    assert answer.path == ["GET /auth -> 303"]  # refused before any page was shown
    assert summary["outcome"] == "failed" and summary["error"] == "invalid_request"
    failed = (await interop.events(cid))[events.EXCHANGE_FAILED]
    assert failed["error_description"] == "unsupported prompt value requested"
    cause = failed["diagnosis"][0]
    assert "prompt=select_account" in cause["cause"]
    assert 'extra_authorization_params.prompt = "consent"' in cause["fix"]
    assert "no prompt_values_supported published" in cause["evidence"]


# -- (b) prompt=consent and offline_access: a refresh token, refreshed for real ---------------


async def test_consent_brings_a_refresh_token_kept_across_refreshes(interop: Interop) -> None:
    """oidc-provider's default rotation (rotateRefreshToken) leaves a confidential client's
    refresh token as it is until 70% of its 14-day lifetime has passed: refreshes succeed
    and hand back no new refresh token, and tokenlife keeps the one it has."""
    async with aiohttp.ClientSession() as session:
        findings = await preflight(interop.settings, interop.runtime.config.presets, {}, session)
    assert not [f for f in codes(findings, "offline").values() if f.severity == "error"]

    cid, answer, summary = await interop.connect("offline")

    # The login page, then the consent page.
    assert sum(step.startswith("POST /interaction/") for step in answer.path) == 2, answer.path
    assert summary["outcome"] == "refreshable" and summary["refresh_token_received"]
    connection, first = await interop.runtime.tokens.load("offline", cid)
    assert connection.status == "active"
    assert first.refresh_token and first.lifetime_source == "expires_in"
    assert first.lifetime_seconds == 60
    assert first.granted_scopes is not None and "offline_access" in first.granted_scopes

    seen = {first.access_token}
    for _ in range(2):
        assert await interop.refresh("offline", cid) == Counter(REFRESHED)
        _, now = await interop.runtime.tokens.load("offline", cid)
        assert now.access_token not in seen
        seen.add(now.access_token)
        assert now.refresh_token == first.refresh_token  # not rotated
    # The same refresh token comes back in each answer: not counted as a rotation.
    assert (await interop.events(cid))[events.TOKEN_REFRESHED]["refresh_token_rotated"] is False
    status, body = await token_request(interop.server, interop.server.client_id,
                                       grant_type="refresh_token",
                                       refresh_token=first.refresh_token)  # fmt: skip
    assert status == 200 and body["refresh_token"] == first.refresh_token  # handed back as is


async def test_a_rotated_refresh_token_used_again_revokes_the_grant(interop: Interop) -> None:
    """With rotation on, each refresh brings a new refresh token and tokenlife stores it.
    The old one presented again is refused (invalid_grant), and oidc-provider then revokes
    the whole grant: the current refresh token dies too, and tokenlife's next refresh says
    the user must connect again."""
    cid, _, summary = await interop.connect("offline-rotating")
    assert summary["outcome"] == "refreshable"
    _, first = await interop.runtime.tokens.load("offline-rotating", cid)

    assert await interop.refresh("offline-rotating", cid) == Counter(REFRESHED)
    _, second = await interop.runtime.tokens.load("offline-rotating", cid)
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert first.refresh_token is not None

    client = interop.server.rotating_client_id
    status, body = await token_request(interop.server, client, grant_type="refresh_token",
                                       refresh_token=first.refresh_token)  # fmt: skip
    assert (status, body["error"]) == (400, "invalid_grant")
    assert body["error_description"] == "grant request is invalid"
    # Reuse detection: the grant is gone, so the newest refresh token is refused as well.
    status, body = await token_request(interop.server, client, grant_type="refresh_token",
                                       refresh_token=second.refresh_token)  # fmt: skip
    assert (status, body["error"]) == (400, "invalid_grant")

    outcome = await interop.refresh("offline-rotating", cid)
    assert outcome == Counter(["reauthorization_required"])
    with pytest.raises(ReauthorizationRequiredError):
        await interop.runtime.access.get("offline-rotating", cid)
    connection, _ = await interop.runtime.tokens.load("offline-rotating", cid)
    assert connection.status == "reauthorization_required"
    alert = (await interop.events(cid))[events.REAUTHORIZATION_REQUIRED]
    assert alert["error"] == "invalid_grant"
    assert alert["error_description"] == "grant request is invalid"
    assert "rotated and an older copy was presented" in alert["diagnosis"][0]["cause"]
    assert (await interop.events(cid))[events.TOKEN_REFRESHED]["refresh_token_rotated"] is True


# -- (c) no refresh token: tokenlife says why ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cause_says", "fix_says"),
    [
        # Consent, but offline_access never asked for.
        ("no-offline-scope", "offline_access", "offline_access"),
        # offline_access asked for with prompt=login: oidc-provider drops it (OIDC Core §11).
        ("offline-login-prompt", "consent", 'prompt = "consent"'),
    ],
)
async def test_no_refresh_token_is_diagnosed(
    interop: Interop, name: str, cause_says: str, fix_says: str
) -> None:
    cid, _, summary = await interop.connect(name)

    assert summary["outcome"] == "refresh_token_missing"
    assert summary["refresh_token_received"] is False
    _, tokens = await interop.runtime.tokens.load(name, cid)
    assert tokens.refresh_token is None
    assert tokens.granted_scopes is not None and "offline_access" not in tokens.granted_scopes
    missing = (await interop.events(cid))[events.REFRESH_TOKEN_MISSING]
    first = missing["diagnosis"][0]
    assert cause_says in first["cause"], missing["diagnosis"]
    assert fix_says in first["fix"], missing["diagnosis"]
    assert summary["fixes"][0] == first["fix"]


# -- (d) RFC 7662 introspection ---------------------------------------------------------------


async def test_introspection_answer_is_parsed(interop: Interop) -> None:
    """oidc-provider states expires_in in every token response, so tokenlife never needs
    to introspect it; the adapter still reads its real answer right."""
    cid, _, _ = await interop.connect("offline")
    _, tokens = await interop.runtime.tokens.load("offline", cid)
    integration = interop.runtime.exchange.integration("offline")
    assert integration.introspection_url == f"{interop.server.issuer}/token/introspection"

    async def ask(token: str) -> Any:
        request = introspection_request(integration, token)
        return await post_introspection_request(interop.runtime.http, request, 5.0)

    said = await ask(tokens.access_token)
    assert said.active and said.exp is not None
    assert tokens.expires_at is not None and abs(said.exp - tokens.expires_at) <= 2

    unknown = await ask("not-a-token-" + uuid.uuid4().hex)
    assert not unknown.active and unknown.exp is None
