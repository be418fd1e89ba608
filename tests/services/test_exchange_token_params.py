"""Extra token request parameters on the wire: a Shopify integration's code exchange says
expiring=1 (the catalogue's token_params) and gets a refresh token for it, and a Zendesk
integration's `extra_token_params` go with the code exchange and with the refresh.

The `generic` integration, resolved as the integrations file resolves a shopify or zendesk
one and pointed at a fake of its own that, like both vendors, issues a refresh token only
when the code exchange asks for an expiring token. The fake records every token request's
form (`token_requests`, without the client secret)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.generic import FakeGeneric
from tests.fakes.server import FakeServers
from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes
from tokenlife.core.integration import Integration
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.runtime import Runtime
from tokenlife.services.exchange import ExchangeService

INTEGRATION = "generic"
CLIENT, SECRET = "vendor-client", "vendor-secret"
ZENDESK_OLD_CLIENT = {"expires_in": "1800", "refresh_token_expires_in": "2592000"}


class FakeExpiringOnRequest(FakeGeneric):
    """A refresh token only for a code exchange that asks for an expiring token: Shopify's
    expiring=1, or Zendesk's expires_in for a client older than its refresh tokens."""

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()  # aiohttp keeps it: the base class reads it again
        if form.get("grant_type") == "authorization_code":
            with self.lock:
                grant = self.grants.get(str(form.get("code", "")))
                if grant is not None:
                    grant.issue_refresh_token = form.get("expiring") == "1" or "expires_in" in form
        return await super().token(request)


@pytest.fixture(scope="module")
def provider(fakes: Fakes) -> Iterator[FakeExpiringOnRequest]:
    fake = FakeExpiringOnRequest()
    servers = FakeServers()
    servers.start(fake)
    fake.register(CLIENT, SECRET, fakes.callback)
    yield fake
    servers.stop()


def service(
    runtime: Runtime, provider: FakeExpiringOnRequest, fakes: Fakes, name: str, **config: Any
) -> tuple[ExchangeService, Integration]:
    """The generic integration as the integrations file would configure provider `name`."""
    base = provider.base_url
    settings = IntegrationConfig(
        provider=name, client_id=CLIENT, client_secret=SECRET, redirect_uri=fakes.callback,
        authorize_url=f"{base}/authorize", token_url=f"{base}/token", scopes=("read",),
        **config,
    )  # fmt: skip
    resolved = resolve(INTEGRATION, settings, load_presets()[name], SECRET, 30.0)
    fields = {f.name: getattr(resolved, f.name) for f in dataclasses.fields(Integration)}
    exchange = exchange_service(runtime, {INTEGRATION: fields})
    return exchange, exchange.integrations[INTEGRATION]


async def connect(exchange: ExchangeService) -> tuple[str, dict[str, Any]]:
    cid = new_id()
    callback = await consent(exchange, INTEGRATION, cid, time.time())
    result = await exchange.exchange_code(
        state=callback["state"], code=callback["code"], error=None, error_description=None,
        attempt=attempt(), now=time.time(), iss=None,
    )  # fmt: skip
    return callback["code"], result


def exchange_form(provider: FakeExpiringOnRequest, code: str) -> dict[str, str]:
    (form,) = [r for r in provider.token_requests if r.get("code") == code]
    return form


async def refresh_form(
    runtime: Runtime, provider: FakeExpiringOnRequest, integration: Integration, cid: str
) -> dict[str, str]:
    connection, tokens = await runtime.tokens.load(INTEGRATION, cid)
    assert tokens.refresh_token is not None
    seen = len(provider.token_requests)
    result = await runtime.refresher.refresh(
        integration, connection, tokens.refresh_token, time.time()
    )
    assert result.outcome.value == "refreshed"
    (form,) = provider.token_requests[seen:]
    assert form["grant_type"] == "refresh_token"
    return form


async def test_a_shopify_code_exchange_asks_for_an_expiring_token_and_gets_a_refresh_token(
    runtime: Runtime, provider: FakeExpiringOnRequest, fakes: Fakes
) -> None:
    exchange, integration = service(runtime, provider, fakes, "shopify")

    code, result = await connect(exchange)

    assert result["error"] is None
    form = exchange_form(provider, code)
    assert form["grant_type"] == "authorization_code" and form["expiring"] == "1"
    assert form["client_id"] == CLIENT  # Shopify's client_secret_post
    cid = result["connection_id"]
    connection = await runtime.tokens.get(INTEGRATION, cid)
    assert connection.has_refresh_token
    # Shopify's refresh needs no expiring=1: the catalogue sends it with the exchange only.
    assert "expiring" not in await refresh_form(runtime, provider, integration, cid)


async def test_a_shopify_integration_that_says_expiring_0_gets_no_refresh_token(
    runtime: Runtime, provider: FakeExpiringOnRequest, fakes: Fakes
) -> None:
    exchange, _ = service(runtime, provider, fakes, "shopify", extra_token_params={"expiring": "0"})

    code, result = await connect(exchange)

    assert exchange_form(provider, code)["expiring"] == "0"
    connection = await runtime.tokens.get(INTEGRATION, result["connection_id"])
    assert not connection.has_refresh_token


async def test_zendesk_extra_token_params_go_with_the_exchange_and_the_refresh(
    runtime: Runtime, provider: FakeExpiringOnRequest, fakes: Fakes
) -> None:
    exchange, integration = service(
        runtime, provider, fakes, "zendesk", extra_token_params=ZENDESK_OLD_CLIENT
    )

    code, result = await connect(exchange)

    assert result["error"] is None
    form = exchange_form(provider, code)
    assert {k: form[k] for k in ZENDESK_OLD_CLIENT} == ZENDESK_OLD_CLIENT
    assert "code_verifier" in form  # Zendesk's PKCE is kept
    refreshed = await refresh_form(runtime, provider, integration, result["connection_id"])
    assert {k: refreshed[k] for k in ZENDESK_OLD_CLIENT} == ZENDESK_OLD_CLIENT
