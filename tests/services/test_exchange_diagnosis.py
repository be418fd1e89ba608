"""A refused authorization or code ends in `exchange.failed` with a diagnosis, and in
`alert.exchange_failed` for on-call, in one step, counted once; provider text is bounded
and never carries the code or the state. The service over the real Runtime and Redis."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.services.exchange_support import attempt, consent, exchange_service, new_id
from tests.support import Fakes, events_for
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.outcome_counters import Counters, parse_outcome_counters
from tokenlife.runtime import Runtime
from tokenlife.services.exchange import ExchangeService
from tokenlife.settings import Settings


@pytest.fixture
def counted(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-diagnosis-{uuid.uuid4().hex[:8]}")


def service_for(runtime: Runtime, counted: Keys, **changes: Any) -> ExchangeService:
    return exchange_service(
        runtime, {"generic": changes}, counters=Counters(runtime.redis, counted)
    )


async def run(service: ExchangeService, callback: dict[str, str]) -> dict[str, Any]:
    return await service.exchange_code(
        state=callback["state"], code=callback.get("code"), error=callback.get("error"),
        error_description=callback.get("error_description"), attempt=attempt(), now=time.time(),
    )  # fmt: skip


async def failed_and_alert(
    redis: Redis, settings: Settings, cid: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    events = await events_for(redis, settings, cid)
    assert [t for t, _ in events] == ["exchange.failed", "alert.exchange_failed"], events
    return events[0][1], events[1][1]


async def failures(redis: Redis, keys: Keys) -> dict[tuple[str, str, str], int]:
    raw = cast(dict[str, str], await redis.hgetall(keys.counters))
    return {k: v for k, v in parse_outcome_counters(raw)[0].items() if v}


@pytest.mark.usefixtures("refusing_prompt")
async def test_a_refused_prompt_names_what_was_sent_and_what_to_send(
    runtime: Runtime, counted: Keys, redis: Redis, settings: Settings
) -> None:
    service, cid = service_for(runtime, counted), new_id()
    callback = await consent(service, "generic", cid, time.time())
    assert callback["error"] == "invalid_request"  # the custom default, select_account

    result = await run(service, callback)

    failed, alert = await failed_and_alert(redis, settings, cid)
    first = failed["diagnosis"][0]
    assert "prompt=select_account" in first["cause"]
    assert 'extra_authorization_params.prompt = "consent"' in first["fix"]
    assert "unsupported prompt value requested" in first["evidence"]
    assert result["diagnosis"] == failed["diagnosis"] == alert["diagnosis"]
    assert result["fixes"] == [first["fix"]]
    assert (alert["cause"], alert["severity"], alert["provider"]) == (
        "prompt_unsupported", "critical", "custom"
    )  # fmt: skip
    assert alert["requested"]["params"]["prompt"] == "select_account"
    assert alert["message"].startswith("Connecting an account failed: ")
    assert callback["state"] not in json.dumps([failed, alert, result])
    assert await failures(redis, counted) == {("custom", "failed", "invalid_request"): 1}


@pytest.mark.usefixtures("refusing_prompt")
async def test_the_prompt_to_send_comes_from_prompt_values_supported(
    runtime: Runtime, counted: Keys, redis: Redis, settings: Settings
) -> None:
    service = service_for(runtime, counted, prompt_values_supported=("none", "login"))
    cid = new_id()
    callback = await consent(service, "generic", cid, time.time())

    await run(service, callback)

    failed, _ = await failed_and_alert(redis, settings, cid)
    assert "Send prompt=login" in failed["diagnosis"][0]["fix"]
    assert (
        "prompt_values_supported in its discovery document: none login"
        in (failed["diagnosis"][0]["evidence"])
    )


async def test_a_code_refused_for_an_expired_secret_says_so_without_the_code(
    runtime: Runtime, counted: Keys, redis: Redis, settings: Settings, fakes: Fakes
) -> None:
    service, cid = service_for(runtime, counted), new_id()
    callback = await consent(service, "generic", cid, time.time())
    code = callback["code"]
    said = (f"AADSTS7000222: The provided client secret keys for app are expired. code {code}\r\n"
            f"Trace ID: 1f0e {'x' * 2000}")  # fmt: skip
    body = json.dumps({"error": "invalid_client", "error_description": said}).encode()
    fakes.generic.script(code, Reply(status=401, body=body))

    result = await run(service, callback)

    failed, alert = await failed_and_alert(redis, settings, cid)
    assert (result["error"], alert["cause"]) == ("invalid_client", "client_secret_expired")
    assert "new client secret" in failed["diagnosis"][0]["fix"]
    for kept in (failed, alert, result):
        assert code not in json.dumps(kept)
        assert len(kept["error_description"]) <= 500 and "\n" not in kept["error_description"]
    assert await failures(redis, counted) == {("custom", "failed", "invalid_client"): 1}


async def test_a_users_refusal_is_an_event_and_a_count_but_no_alert(
    runtime: Runtime, counted: Keys, redis: Redis, settings: Settings
) -> None:
    service, cid = service_for(runtime, counted), new_id()
    callback = await consent(service, "generic", cid, time.time(), deny="1")
    # A provider that echoes the request: the state is masked wherever the text is kept.
    callback["error_description"] = f"The user denied access (state={callback['state']})"

    await run(service, callback)

    events = await events_for(redis, settings, cid)
    assert [t for t, _ in events] == ["exchange.failed"]  # nothing for on-call to close
    failed = events[0][1]
    assert failed["error_description"] == "The user denied access (state=***)"
    assert callback["state"] not in json.dumps(failed)
    assert failed["diagnosis"][0]["evidence"].startswith("error=access_denied")
    assert await failures(redis, counted) == {("custom", "failed", "access_denied"): 1}
