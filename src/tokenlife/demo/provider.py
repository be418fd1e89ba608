"""What every demo provider shares: codes, client authentication, PKCE, refresh-token
families, and misbehaviour a test scripts per code.

A provider is a real aiohttp app. The test suite serves these same classes as its fake
providers and reads their state (codes issued, tokens issued, requests seen);
`tokenlife demo-provider` serves them with a consent page a person clicks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tokenlife.demo import consent
from tokenlife.demo.grants import (
    Client,
    Family,
    Grant,
    Reply,
    check_code,
    client_credentials,
    unsigned_jwt,
)

log = logging.getLogger(__name__)


class DemoProvider:
    """Subclasses decide when a refresh token is issued and shape the responses."""

    title = "An OAuth 2.0 provider"
    # What the vendor needs before it issues a refresh token, for the consent page.
    refresh_token_rule = "A refresh token is issued when the subclass says so."
    default_lifetime = 3600
    # A refresh hands out a new refresh token ...
    rotates_refresh_tokens = False
    # ... and the one presented stops working.
    retires_used_refresh_tokens = False
    # Presenting a rotated-out refresh token revokes the whole family (Auth0's rule).
    detects_reuse = False
    # ... unless it was rotated out less than this long ago: the previous refresh token
    # keeps working for a while (Atlassian's 10-minute leeway, Auth0's overlap period).
    # Off by default.
    reuse_grace_seconds = 0.0
    # Every refresh answer takes this long (a slow provider, so refreshes are in flight
    # when a test kills the client). Off by default.
    refresh_delay_seconds = 0.0
    # An OpenID provider returns an ID token (with the user as `sub`) when `openid` is
    # requested (OIDC Core §3.1.3.3); Google and Microsoft do.
    issues_id_tokens = True
    # RFC 9207: the authorization response carries `iss` (and discovery says so).
    sends_iss = False
    # The `prompt` values this server accepts (None: any). Another one is refused with
    # invalid_request, as certified OpenID servers without select_account do; discovery
    # publishes the list as `prompt_values_supported` where the provider has a document.
    prompt_values_supported: tuple[str, ...] | None = None

    def __init__(self, *, consent_page: bool = False) -> None:
        # Without a consent page (the tests' fakes) the user in `login_hint` consents at
        # once; with one, a person reads what the app asked for and clicks.
        self.consent_page = consent_page
        self.lock = threading.Lock()
        self.clients: dict[str, Client] = {}
        self.grants: dict[str, Grant] = {}  # by code
        self.scripts: dict[str, list[Reply]] = {}  # by code
        self.token_requests: list[dict[str, str]] = []
        self.issued_secrets: list[str] = []  # every access/refresh token ever issued
        self.base_url = ""
        self.families: dict[str, Family] = {}  # by the code that started them
        self.refresh_tokens: dict[str, str] = {}  # every refresh token -> its family
        self.refresh_scripts: dict[str, list[Reply]] = {}  # by family
        self.reuse_detected = 0
        self.grace_reuses = 0  # rotated-out tokens accepted inside the grace window
        self.retired_at: dict[str, float] = {}  # rotated-out refresh token -> monotonic time
        self.refreshing_now = 0
        self.most_refreshing_at_once = 0
        self.access_users: dict[str, str] = {}  # every access token -> the user it is for
        self.account_ids: dict[str, int] = {}  # user -> numeric account id (GitHub-like)
        self.account_requests: list[dict[str, str]] = []  # method, Authorization, body
        self.account_replies: list[Reply] = []

    # -- set-up from tests -------------------------------------------------------------
    def register(self, client_id: str, secret: str | None, *redirect_uris: str) -> None:
        self.clients[client_id] = Client(client_id, secret, redirect_uris)

    def script(self, code: str, *replies: Reply) -> None:
        """The token endpoint answers these, in order, for `code`; the last one repeats."""
        with self.lock:
            self.scripts[code] = list(replies)

    def script_refresh(self, family: str, *replies: Reply) -> None:
        """Refreshes of `family` answer these, in order; the last one repeats."""
        with self.lock:
            self.refresh_scripts[family] = list(replies)

    def script_account(self, *replies: Reply) -> None:
        """The account endpoint answers these, in order; the last one repeats."""
        with self.lock:
            self.account_replies = list(replies)

    def account_id(self, user: str) -> int:
        with self.lock:
            return self.account_ids.setdefault(user, 1000 + len(self.account_ids))

    def grant_for(self, code: str) -> Grant:
        return self.grants[code]

    def mint(self, client_id: str, scopes: tuple[str, ...], lifetime: int) -> dict[str, Any]:
        """A token response as if a user had consented, without the browser dance.

        For seeding thousands of connections; the family is keyed by a fresh code.
        """
        code = self._new_code()
        grant = Grant(
            client_id=client_id,
            user=code,
            redirect_uri="",
            scopes=scopes,
            params={},
            issue_refresh_token=True,
            code_challenge=None,
            used=True,
        )
        with self.lock:
            self.grants[code] = grant
        body = self.token_body(grant, Reply(lifetime=lifetime), family=code)
        body["family"] = code
        return body

    def refreshes(self, family: str) -> int:
        return self.families[family].refreshes

    # -- the vendor's policy (overridden) ------------------------------------------------
    def refresh_token_on_consent(
        self, client_id: str, user: str, scopes: tuple[str, ...], params: dict[str, str]
    ) -> bool:
        raise NotImplementedError

    def granted_scope(self, grant: Grant) -> str:
        return " ".join(grant.scopes)

    def token_body(self, grant: Grant, reply: Reply, family: str | None = None) -> dict[str, Any]:
        lifetime = reply.lifetime if reply.lifetime is not None else self.default_lifetime
        access = self._new_secret("at")
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": self.granted_scope(grant),
        }
        if reply.jwt_exp is not None:
            body["access_token"] = unsigned_jwt({"exp": reply.jwt_exp, "sub": grant.user})
            with self.lock:
                self.issued_secrets.append(body["access_token"])
            del body["expires_in"]
        elif reply.expires_in == "omit":
            del body["expires_in"]
        elif reply.expires_in is not None:
            body["expires_in"] = reply.expires_in
        if self.issues_id_tokens and "openid" in grant.scopes:
            body["id_token"] = self.id_token(grant)
        with self.lock:
            self.access_users[body["access_token"]] = grant.user
        give = grant.issue_refresh_token if reply.refresh_token is None else reply.refresh_token
        if give and family is not None:
            refresh = self._new_secret("rt")
            with self.lock:
                entry = self.families.setdefault(family, Family(grant))
                if entry.live is not None:
                    self.retired_at[entry.live] = time.monotonic()
                entry.previous, entry.rotated_at, entry.live = entry.live, time.monotonic(), refresh
                self.refresh_tokens[refresh] = family
            body["refresh_token"] = refresh
        return body

    def refused_prompt(self, prompt: str | None) -> str | None:
        """The first `prompt` value this server doesn't support (a space-separated list,
        OIDC Core §3.1.2.1), or None."""
        supported = self.prompt_values_supported
        if supported is None or prompt is None:
            return None
        return next((v for v in prompt.split() if v not in supported), None)

    def error_body(self, error: str, description: str) -> dict[str, Any]:
        return {"error": error, "error_description": description}

    @property
    def issuer(self) -> str:
        """The `iss` of its ID tokens: the discovery issuer unless the vendor says otherwise."""
        return self.base_url

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": grant.user, "aud": grant.client_id,
                  "iat": now, "exp": now + 3600}  # fmt: skip
        return unsigned_jwt(claims)

    # -- HTTP ----------------------------------------------------------------------------
    def app(self) -> web.Application:
        raise NotImplementedError

    def offline_request(self, scopes: tuple[str, ...], params: dict[str, str]) -> str:
        """What the authorization request said about offline access, for the consent page."""
        return ""

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """GET: the consent page, or consent at once by the user in `login_hint` (default
        alice) when there is none. POST: the consent page's answer."""
        if request.method == "POST":
            params = {k: str(v) for k, v in (await request.post()).items()}
            denied = params.pop("decision", "") != "allow"
        else:
            params = dict(request.query)
            denied = params.get("deny") == "1"  # the user clicked "Cancel"
        client = self.clients.get(params.get("client_id", ""))
        if client is None or params.get("redirect_uri") not in client.redirect_uris:
            # RFC 6749 §4.1.2.1: never redirect to an unverified URI; tell the user.
            return web.Response(status=400, text="invalid client or redirect_uri")
        if params.get("response_type") != "code":
            return web.Response(status=400, text="unsupported response_type")
        if self.consent_page and request.method == "GET":
            scopes = tuple(params.get("scope", "").split())
            return consent.page(self.title, params, self.offline_request(scopes, params),
                                self.refresh_token_rule)  # fmt: skip
        redirect = params["redirect_uri"]
        refused = self.refused_prompt(params.get("prompt"))
        if refused is not None:
            said = f"unsupported prompt value requested: {refused}"
            answer = {"error": "invalid_request", "error_description": said,
                      "state": params.get("state", "")}  # fmt: skip
            raise web.HTTPFound(redirect + "?" + urlencode(answer))
        if denied:
            log.info("%s: consent denied for %s", self.title, client.client_id)
            answer = {"error": "access_denied", "error_description": "The user denied access",
                      "state": params.get("state", "")}  # fmt: skip
            raise web.HTTPFound(redirect + "?" + urlencode(answer))
        user = params.get("login_hint") or "alice"
        scopes = tuple(params.get("scope", "").split())
        code = self._new_code()
        with self.lock:
            offline = self.refresh_token_on_consent(client.client_id, user, scopes, params)
            self.grants[code] = Grant(
                client_id=client.client_id, user=user, redirect_uri=redirect, scopes=scopes,
                params=params, issue_refresh_token=offline,
                code_challenge=params.get("code_challenge"),
            )  # fmt: skip
        log.info("%s: %s consented for %s; a refresh token with this code: %s",
                 self.title, user, client.client_id, "yes" if offline else "no")  # fmt: skip
        answer = {"code": code, "state": params.get("state", "")}
        if self.sends_iss:
            answer["iss"] = self.issuer
        raise web.HTTPFound(redirect + "?" + urlencode(answer))

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        with self.lock:
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        client_id, secret = client_credentials(request, form)
        client = self.clients.get(client_id or "")
        if client is None or (client.client_secret is not None and secret != client.client_secret):
            return self.json(
                401, self.error_body("invalid_client", "Client authentication failed.")
            )
        if form.get("grant_type") == "refresh_token":
            return await self.refresh(client, form)
        if form.get("grant_type") != "authorization_code":
            return self.json(400, self.error_body("unsupported_grant_type", "Unsupported grant."))
        code = str(form.get("code", ""))
        reply = self._next_reply(code)
        scripted = await self._play(reply)
        if scripted is not None:
            return scripted
        with self.lock:
            grant = self.grants.get(code)
            problem = check_code(grant, client, form)
            if problem is None:
                assert grant is not None
                grant.used = True
        if problem is not None:
            return self.json(400, self.error_body("invalid_grant", problem))
        assert grant is not None
        body = self.token_body(grant, reply, family=code)
        log.info("%s: code exchanged by %s: an access token for %s s, %s", self.title,
                 client.client_id, body.get("expires_in", "?"),
                 "and a refresh token" if "refresh_token" in body else "NO refresh token",
                 )  # fmt: skip
        return self.json(200, body)

    async def refresh(self, client: Client, form: dict[str, str]) -> web.StreamResponse:
        """RFC 6749 §6, with rotation and reuse detection when the vendor does them."""
        presented = form.get("refresh_token", "")
        with self.lock:
            family_id = self.refresh_tokens.get(presented)
            family = self.families.get(family_id or "")
        if family_id is None or family is None or family.grant.client_id != client.client_id:
            return self.json(400, self.error_body("invalid_grant", "Unknown refresh token."))
        reply = self._next_reply(family_id, self.refresh_scripts)
        with self.lock:
            self.refreshing_now += 1
            self.most_refreshing_at_once = max(self.most_refreshing_at_once, self.refreshing_now)
        try:
            delay = reply.delay or self.refresh_delay_seconds
            if delay:
                await asyncio.sleep(delay)
        finally:
            with self.lock:
                self.refreshing_now -= 1
        scripted = self._scripted_response(reply)
        if scripted is not None:
            return scripted
        with self.lock:
            if family.revoked:
                return self.json(400, self.error_body("invalid_grant", "Token family revoked."))
            if (
                self.retires_used_refresh_tokens
                and presented != family.live
                and self._within_grace(presented)
            ):
                self.grace_reuses += 1
            elif self.retires_used_refresh_tokens and presented != family.live:
                if self.detects_reuse:
                    family.revoked = True
                    family.reuse_detected += 1
                    self.reuse_detected += 1
                return self.json(400, self.error_body("invalid_grant", "Refresh token reused."))
            family.refreshes += 1
        grant = replace(family.grant, issue_refresh_token=self.rotates_refresh_tokens)
        body = self.token_body(grant, reply, family=family_id)
        log.info("%s: refresh token used by %s: a new access token for %s s", self.title,
                 client.client_id, body.get("expires_in", "?"))  # fmt: skip
        return self.json(200, body)

    async def account(self, request: web.Request) -> web.StreamResponse:
        """A "current user" API like GitHub's `GET /user`: `{"id": <number>, "login": ...}`
        for the user the Bearer token was issued to; scripted answers first."""
        body = await request.read()
        with self.lock:
            self.account_requests.append({
                "method": request.method,
                "authorization": request.headers.get("Authorization", ""),
                "content_type": request.headers.get("Content-Type", ""),
                "body": body.decode(errors="replace"),
            })  # fmt: skip
            reply = self.take(self.account_replies)
        scripted = await self._play(reply)
        if scripted is not None:
            return scripted
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            user = self.access_users.get(token)
        if user is None:
            return self.json(401, {"message": "Bad credentials"})
        return self.json(200, {"id": self.account_id(user), "login": user})

    def json(self, status: int, body: dict[str, Any]) -> web.Response:
        return web.Response(
            status=status,
            text=json.dumps(body),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    # -- internals -----------------------------------------------------------------------
    def _within_grace(self, presented: str) -> bool:
        """A rotated-out token still inside the reuse grace window (call under the lock)."""
        retired = self.retired_at.get(presented)
        if retired is None or self.reuse_grace_seconds <= 0:
            return False
        return time.monotonic() - retired <= self.reuse_grace_seconds

    def _scripted_response(self, reply: Reply) -> web.Response | None:
        """The scripted answer itself, unless the reply only adjusts a normal one."""
        if reply.status == 200 and reply.body is None:
            return None
        return web.Response(
            status=reply.status,
            body=reply.body or b"",
            content_type=None,
            headers={"Content-Type": reply.content_type, **reply.headers},
        )

    async def _play(self, reply: Reply) -> web.Response | None:
        """Wait out the reply's delay, then its scripted answer (None: answer normally)."""
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return self._scripted_response(reply)

    @staticmethod
    def take(replies: list[Reply] | None) -> Reply:
        """The next scripted reply, the last one repeating; a normal one when none is
        scripted. Callers hold self.lock."""
        if not replies:
            return Reply()
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def _next_reply(self, key: str, scripts: dict[str, list[Reply]] | None = None) -> Reply:
        with self.lock:
            return self.take((self.scripts if scripts is None else scripts).get(key))

    def _new_code(self) -> str:
        return "code-" + secrets.token_urlsafe(16)

    def _new_secret(self, kind: str) -> str:
        value = f"{kind}-" + secrets.token_urlsafe(24)
        with self.lock:
            self.issued_secrets.append(value)
        return value
