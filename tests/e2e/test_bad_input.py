"""Bad input from users and providers: a clear error, an `exchange.failed` event where
the state was real, and nothing stored."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import Fakes, WorkerHandle, consent, events_for, exchange, stored_connection
from tokenlife.adapters.keys import Keys
from tokenlife.errors import UnknownConnectionError
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings


def new_id() -> str:
    return "user-" + uuid.uuid4().hex[:12]


async def assert_nothing_stored(tl: Tokenlife, integration: str, cid: str) -> None:
    with pytest.raises(UnknownConnectionError):
        await stored_connection(tl, integration, cid)


async def failed_event(
    redis: Redis, settings: Settings, cid: str, *, alerted: bool = True
) -> dict[str, Any]:
    """The exchange.failed event; with the alert on-call gets, unless the user chose it."""
    events = await events_for(redis, settings, cid)
    if not alerted:
        assert [t for t, _ in events] == ["exchange.failed"], events
        return events[0][1]
    assert [t for t, _ in events] == ["exchange.failed", "alert.exchange_failed"], events
    assert events[1][1]["diagnosis"] == events[0][1]["diagnosis"]
    return events[0][1]


async def test_unknown_state_is_rejected_and_nothing_happens(worker: WorkerHandle) -> None:
    summary = await exchange(worker, state="no-such-state", code="whatever")
    assert summary["outcome"] == "failed"
    assert summary["error"] == "invalid_state"
    assert summary["integration"] is None


async def test_a_replayed_state_gets_the_first_outcome_and_sends_nothing(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings, fakes: Fakes
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    first = await exchange(worker, state=callback["state"], code=callback["code"])
    replay = await exchange(worker, state=callback["state"], code=callback["code"])

    assert first["outcome"] != "failed"
    assert replay == first  # the summary kept on the state, not a second exchange
    codes = [r for r in fakes.generic.token_requests if r.get("code") == callback["code"]]
    assert len(codes) == 1
    assert (await stored_connection(tl, "generic", cid)).version == 1
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert types == ["connection.authorized", "alert.refresh_token_missing"]


async def test_expired_state_is_rejected(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    key = Keys(settings.key_prefix, settings.redis_shards).pending(callback["state"])
    assert 590 <= await redis.ttl(key) <= 600  # ten minutes to finish the consent screen
    await redis.delete(key)  # what the TTL does after ten minutes

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["error"] == "invalid_state"
    await assert_nothing_stored(tl, "generic", cid)


async def test_access_denied_on_the_callback_emits_exchange_failed(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid, deny="1")
    assert callback["error"] == "access_denied"

    summary = await exchange(
        worker,
        state=callback["state"],
        error=callback["error"],
        error_description=callback["error_description"],
    )

    assert summary["outcome"] == "failed" and summary["error"] == "access_denied"
    # The user clicked Cancel: an event and a count, no page for on-call.
    event = await failed_event(redis, settings, cid, alerted=False)
    assert event["error"] == "access_denied"
    assert event["error_description"] == "The user denied access"
    await assert_nothing_stored(tl, "generic", cid)


async def test_callback_with_both_code_and_error_is_refused(worker: WorkerHandle) -> None:
    summary = await exchange(worker, state="s", code="c", error="access_denied")
    assert summary["error"] == "invalid_request"


BAD_RESPONSES = [
    pytest.param(
        Reply(body=b"<html><body>Sign in</body></html>", content_type="text/html"),
        "invalid_response",
        "not JSON",
        id="html",
    ),
    pytest.param(
        Reply(body=b'{"token_type": "Bearer"}'),
        "invalid_response",
        "no access_token",
        id="json-without-access-token",
    ),
    pytest.param(
        Reply(expires_in=-3600), "invalid_response", "not a positive number", id="negative"
    ),
    pytest.param(Reply(expires_in=10**12), "invalid_response", "implausibly large", id="absurd"),
    pytest.param(
        Reply(body=b'{"access_token": "' + b"x" * (1024 * 1024) + b'"}'),
        "invalid_response",
        "larger than",
        id="over-1-MiB",
    ),
    pytest.param(
        Reply(status=400, body=b'{"error": "invalid_grant", "error_description": "Code expired"}'),
        "invalid_grant",
        "Code expired",
        id="invalid_grant",
    ),
    pytest.param(
        Reply(status=401, body=b'{"error": "invalid_client"}'),
        "invalid_client",
        "invalid_client",
        id="invalid_client",
    ),
]


@pytest.mark.parametrize(("reply", "error", "description"), BAD_RESPONSES)
async def test_unusable_or_refusing_token_endpoint_fails_at_once_and_stores_nothing(
    tl: Tokenlife,
    worker: WorkerHandle,
    fakes: Fakes,
    redis: Redis,
    settings: Settings,
    reply: Reply,
    error: str,
    description: str,
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], reply)
    before = _requests_for(fakes, callback["code"])

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["error"] == error
    assert description in summary["error_description"]
    assert _requests_for(fakes, callback["code"]) == before + 1  # terminal: no retry
    event = await failed_event(redis, settings, cid)
    assert event["error"] == error and event["attempts"] == 1
    await assert_nothing_stored(tl, "generic", cid)


async def test_expires_in_as_a_numeric_string_is_accepted(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], Reply(expires_in=str(40 * 86400)))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "long_lived"
    assert (await stored_connection(tl, "generic", cid)).lifetime_seconds == 40 * 86400


async def test_lifetime_from_a_jwt_exp_claim(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    far = 2_000_000_000  # 2033: far more than 30 days ahead
    fakes.generic.script(callback["code"], Reply(jwt_exp=far))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    connection = await stored_connection(tl, "generic", cid)
    assert summary["outcome"] == "long_lived"
    assert connection.lifetime_source == "jwt_exp" and connection.expires_at == far


async def test_unknown_lifetime_is_stored_with_a_warning(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], Reply(expires_in="omit"))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "lifetime_unknown" and summary["status"] == "active"
    events = dict(await events_for(redis, settings, cid))
    assert "connection.authorized" in events
    assert events["alert.lifetime_unknown"]["access_token_lifetime_seconds"] is None
    assert (await stored_connection(tl, "generic", cid)).expires_at is None


TRANSIENT = [
    pytest.param(
        "generic",
        Reply(status=503, body=b"<html>Service Unavailable</html>", content_type="text/html"),
        "server_error",
        id="5xx",
    ),
    pytest.param("generic-unreachable", None, "unreachable", id="refused"),
]


@pytest.mark.parametrize(("integration", "reply", "error"), TRANSIENT)
async def test_transient_failures_are_retried_then_reported(
    tl: Tokenlife,
    worker: WorkerHandle,
    fakes: Fakes,
    redis: Redis,
    settings: Settings,
    integration: str,
    reply: Reply | None,
    error: str,
) -> None:
    cid = new_id()
    callback = await consent(tl, integration, cid)
    if reply is not None:
        fakes.generic.script(callback["code"], reply)

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    attempts = settings.exchange_max_retries + 1
    assert summary["error"] == error
    if reply is not None:
        assert _requests_for(fakes, callback["code"]) == attempts
    event = await failed_event(redis, settings, cid)
    assert event["attempts"] == attempts
    await assert_nothing_stored(tl, integration, cid)


async def test_a_provider_that_recovers_within_the_retries_authorizes_once(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(
        callback["code"],
        Reply(status=500, body=b"oops"),
        Reply(status=503, body=b"<html>Service Unavailable</html>", content_type="text/html"),
        Reply(),
    )

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "refresh_token_missing"  # 1 h token, no offline_access
    assert _requests_for(fakes, callback["code"]) == 3
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert types == ["connection.authorized", "alert.refresh_token_missing"]


async def test_a_timed_out_code_request_is_not_sent_again_and_ends_in_outcome_unknown(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    """The provider may have redeemed a code whose answer never came (RFC 6749 §4.1.2):
    no retry sends it again, and the exchange says so at once."""
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    # Slower than the worker's 1 s timeout; the answer after it is a normal one.
    fakes.generic.script(callback["code"], Reply(delay=2))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["error"] == "outcome_unknown"
    assert "may have redeemed it" in summary["error_description"]
    assert _requests_for(fakes, callback["code"]) == 1
    event = await failed_event(redis, settings, cid)
    assert (event["error"], event["attempts"]) == ("outcome_unknown", 1)
    await assert_nothing_stored(tl, "generic", cid)


def _requests_for(fakes: Fakes, code: str) -> int:
    return sum(1 for r in fakes.generic.token_requests if r.get("code") == code)


def test_bad_responses_table_names_each_case_once() -> None:
    ids = [p.id for p in BAD_RESPONSES] + [p.id for p in TRANSIENT]
    assert len(ids) == len(set(ids))
