"""A refused sign-in, end to end: the fake provider redirects back with `error` (or its
token endpoint refuses the code), the callback page says what the provider said and what
to change, and on-call gets one `alert.exchange_failed` per integration and cause."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.e2e.browser import browser_flow, serving
from tests.fakes.base import Reply
from tests.services.exchange_support import attempt, consent
from tests.support import Fakes, WorkerHandle
from tokenlife.adapters.discovery import prompt_values_from
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.pages import result_page

KEY = "diagnosis-key-0123456789abcdef"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(settings, api_keys=(KEY,)) as test_client:
        yield test_client


@pytest.mark.usefixtures("refusing_prompt")
async def test_the_page_says_what_the_provider_said_and_what_to_change(
    client: TestClient[Any, Any], worker: WorkerHandle
) -> None:
    status, headers, body = await browser_flow(client, KEY, "generic", f"web-{uuid.uuid4().hex}")

    assert status == 400 and headers["Content-Type"].startswith("text/html")
    assert "expired or was already used" not in body  # the wrong page
    assert "The provider said: invalid_request (unsupported prompt value requested" in body
    assert "prompt=select_account" in body
    assert "extra_authorization_params.prompt = &quot;consent&quot;" in body  # escaped


@pytest.mark.parametrize(
    "query",
    [
        {"state": "x" * 43, "error": "org_internal"},  # a state tokenlife doesn't know
        {"error": "org_internal"},  # no state at all
    ],
    ids=["unknown-state", "no-state"],
)
async def test_a_provider_error_is_shown_even_without_a_usable_state(
    client: TestClient[Any, Any], worker: WorkerHandle, query: dict[str, str]
) -> None:
    response = await client.get("/oauth/callback", params=query)
    body = await response.text()

    assert response.status == 400
    assert "expired or was already used" not in body
    assert "It answered: org_internal" in body and "External" in body


async def test_a_bad_state_without_a_provider_error_is_still_an_expired_link(
    client: TestClient[Any, Any], worker: WorkerHandle
) -> None:
    response = await client.get("/oauth/callback", params={"state": "x" * 43, "code": "c"})
    assert "expired or was already used" in await response.text()


async def test_without_a_state_of_ours_the_text_is_not_shown_only_the_cleaned_code(
    client: TestClient[Any, Any], worker: WorkerHandle
) -> None:
    """Anyone can send a browser to /oauth/callback?error=...&error_description=...: with
    no pending state behind it, the free text would put their words on this domain."""
    said = "<script>alert(1)</script> Call support at +1 555 0100 " + "y" * 5000
    response = await client.get(
        "/oauth/callback", params={"error": "<b>access_denied</b>", "error_description": said}
    )
    body = await response.text()

    assert "<script>" not in body and "<b>" not in body
    assert "555 0100" not in body and "alert(1)" not in body
    assert "access_denied" in body and "refused the sign-in" in body


# -- the alert -----------------------------------------------------------------------------


@pytest.fixture
async def alerting(settings: Settings, fakes: Fakes) -> AsyncIterator[tuple[Runtime, str]]:
    """A runtime on a fresh stream, its webhook on a path of its own."""
    tag = uuid.uuid4().hex[:8]
    path = f"/{tag}/hook"
    configured = settings.model_copy(update={
        "key_prefix": f"diagnosis-{tag}",
        "alert_webhook_urls": (fakes.receiver.base_url + path,),
        "alert_urls": (),
        "alert_claim_idle_seconds": 0,
    })  # fmt: skip
    runtime = await Runtime.open(await load_config(configured))
    await runtime.alert_delivery().run_once(time.time())  # the consumer group: from here on
    yield runtime, path
    await runtime.close()


async def refused(runtime: Runtime, fakes: Fakes, reply: Reply | None = None) -> None:
    service = runtime.exchange
    callback = await consent(service, "generic", f"user-{uuid.uuid4().hex[:8]}", time.time())
    if reply is not None:
        fakes.generic.script(callback["code"], reply)
    await service.exchange_code(
        state=callback["state"], code=callback.get("code"), error=callback.get("error"),
        error_description=callback.get("error_description"), attempt=attempt(), now=time.time(),
    )  # fmt: skip


async def test_on_call_gets_one_alert_per_integration_and_cause(
    alerting: tuple[Runtime, str], fakes: Fakes, refusing_prompt: None
) -> None:
    runtime, path = alerting
    for _ in range(3):  # three users, one cause
        await refused(runtime, fakes)
    fakes.generic.prompt_values_supported = None
    expired = json.dumps({"error": "invalid_client",
                          "error_description": "AADSTS7000222: The provided client secret "
                                               "keys are expired."}).encode()  # fmt: skip
    await refused(runtime, fakes, Reply(status=401, body=expired))

    totals = await runtime.alert_delivery().run_once(time.time())

    payloads = [json.loads(r.body) for r in fakes.receiver.at(path)]
    assert totals["suppressed"] == 2, totals  # the second and third prompt refusals
    # The expired secret pages once for the integration, not as an exchange failure.
    assert sorted((p["type"], p["severity"], p["events"][0].get("cause")) for p in payloads) == [
        ("alert.client_secret_expired", "critical", None),
        ("alert.exchange_failed", "critical", "prompt_unsupported"),
    ]
    prompt = next(p for p in payloads if p["events"][0]["cause"] == "prompt_unsupported")
    assert prompt["events"][0]["diagnosis"][0]["fix"].startswith("Send prompt=consent")


# -- prompt_values_supported from discovery -------------------------------------------------


@pytest.mark.usefixtures("refusing_prompt")
async def test_an_integration_keeps_the_prompt_values_its_issuer_publishes(
    settings: Settings,
) -> None:
    runtime = await Runtime.open(await load_config(settings))
    try:
        offline = runtime.exchange.integration("generic-offline")  # issuer = the fake
        explicit = runtime.exchange.integration("generic")  # explicit endpoints: unknown
    finally:
        await runtime.close()
    assert offline.prompt_values_supported == ("none", "login", "consent")
    assert explicit.prompt_values_supported is None


@pytest.mark.parametrize(
    ("published", "kept"),
    [
        (["none", "login"], ("none", "login")),
        ("login", None),  # not a list
        ([1, "login"], None),
        (None, None),
    ],
)
def test_prompt_values_from_reads_only_a_list_of_strings(published: Any, kept: Any) -> None:
    document = {} if published is None else {"prompt_values_supported": published}
    assert prompt_values_from(document) == kept


def test_a_providers_text_on_the_result_page_is_escaped_and_bounded() -> None:
    said = "<script>alert(1)</script>" + "y" * 5000
    response = result_page({"outcome": "failed", "error": "access_denied",
                            "error_description": said, "diagnosis": []})  # fmt: skip
    assert response.text is not None
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text
    assert "y" * 300 not in response.text  # at most 300 characters of it
