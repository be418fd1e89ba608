"""Client secrets that expire, against the real Redis: each warning goes out once, however
many processes look; a new date starts again; the expired-secret alert is raised once and
resolved once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.services.exchange_support import attempt, consent
from tests.support import Fakes, stream_events
from tokenlife.core import events
from tokenlife.core.integration import Integration
from tokenlife.core.secret_expiry import SECRET_EXPIRED_RETRY_SECONDS
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.runtime import Runtime
from tokenlife.settings import Settings

DAY = 86400.0
EXPIRES = datetime(2027, 6, 30, tzinfo=UTC).timestamp()


def dated(expires_at: Any) -> Integration:
    config = IntegrationConfig(
        provider="microsoft", client_id="client", client_secret="secret",
        redirect_uri="https://app.example.com/oauth/callback",
        client_secret_expires_at=expires_at,
    )  # fmt: skip
    name = "secret-" + uuid.uuid4().hex[:10]
    return resolve(name, config, load_presets()["microsoft"], "secret", 30.0)


async def of(redis: Redis, settings: Settings, kind: str, name: str) -> list[dict[str, Any]]:
    found = await stream_events(redis, settings.key_prefix)
    return [d for t, d in found if t == kind and d["integration"] == name]


async def test_each_warning_goes_out_once_and_a_new_date_starts_again(
    runtime: Runtime, redis: Redis, settings: Settings
) -> None:
    crm, quiet = dated(int(EXPIRES)), dated(0)  # 0: never expires (RFC 7591)
    watch = runtime.secrets
    assert await watch.check_expiring([crm, quiet], EXPIRES - 45 * DAY) == []
    # Two processes look at the same moment: one alert.
    at_30 = EXPIRES - 29 * DAY
    both = await asyncio.gather(
        watch.check_expiring([crm, quiet], at_30), watch.check_expiring([crm, quiet], at_30)
    )
    assert sorted(both, key=len) == [[], [crm.name]]
    assert await watch.check_expiring([crm], EXPIRES - 8 * DAY) == []  # still the 30-day stage
    assert await watch.check_expiring([crm], EXPIRES - 6 * DAY) == [crm.name]
    assert await watch.check_expiring([crm], EXPIRES - 0.5 * DAY) == [crm.name]
    assert await watch.check_expiring([crm], EXPIRES - 0.1 * DAY) == []
    assert await watch.check_expiring([crm], EXPIRES + 1) == []  # past: the refusal tells

    sent = await of(redis, settings, events.CLIENT_SECRET_EXPIRING, crm.name)
    assert [e["lead_days"] for e in sent] == [30, 7, 1]
    assert sent[0]["connection_id"] is None
    assert sent[0]["client_secret_expires_at"] == "2027-06-30T00:00:00Z"
    assert sent[0]["days_left"] == 29.0 and sent[0]["connections"] == 0
    assert "Certificates & secrets" in sent[0]["fix"]
    assert sent[0]["fix_source"].startswith("https://learn.microsoft.com")
    assert await of(redis, settings, events.CLIENT_SECRET_EXPIRING, quiet.name) == []

    # The secret was replaced early and the file has the new date: its leads start again.
    renewed = replace(dated(int(EXPIRES + 365 * DAY)), name=crm.name)
    assert await watch.check_expiring([renewed], EXPIRES + 340 * DAY) == [crm.name]


async def test_the_expired_alert_is_raised_once_and_resolved_once(
    runtime: Runtime, redis: Redis, settings: Settings
) -> None:
    crm, watch = dated(None), runtime.secrets
    said = "AADSTS7000222: The provided client secret keys for app 'x' are expired."
    raised = await asyncio.gather(
        *(watch.refused(crm, "invalid_client", said, 1000.0 + n) for n in range(5))
    )
    assert sorted(raised) == [False] * 4 + [True]
    [alert] = await of(redis, settings, events.CLIENT_SECRET_EXPIRED, crm.name)
    assert alert["error_description"] == said and alert["client_secret_expires_at"] is None

    assert await watch.accepted(crm, 2000.0) is True
    assert await watch.accepted(crm, 2001.0) is False  # the second recovery says nothing
    [accepted] = await of(redis, settings, events.CLIENT_SECRET_ACCEPTED, crm.name)
    assert accepted["expired_since"] is not None
    # Expired again later: a new alert.
    assert await watch.refused(crm, "invalid_client", said, 3000.0) is True


async def test_one_connection_probes_at_a_time_and_a_success_brings_the_rest(
    runtime: Runtime, redis: Redis
) -> None:
    """While the mark is held, beat brings ONE held-back connection forward per 10 minutes;
    the secret accepted again brings all of them forward."""
    crm, watch, keys = dated(None), runtime.secrets, runtime.keys
    later = 5000.0 + SECRET_EXPIRED_RETRY_SECONDS
    cids = ["a", "b", "c"]

    async def put(cid: str, held: dict[str, str]) -> None:
        await redis.hset(keys.connection(crm.name, cid), mapping=held)  # type: ignore[arg-type]
        await redis.zadd(keys.connections(crm.name, keys.shard(crm.name, cid)), {cid: 0})
        await redis.zadd(keys.schedule_of(crm.name, cid), {keys.member(crm.name, cid): later})

    async def due(cid: str) -> float:
        return (
            await redis.zscore(keys.schedule_of(crm.name, cid), keys.member(crm.name, cid)) or 0.0
        )

    for cid in cids:
        await put(cid, {"retry_not_before": repr(later), "next_refresh_at": repr(later),
                        "retry_held_by": "client_secret"})  # fmt: skip
    # One held back by the provider's Retry-After: a new secret does not end that.
    await put("limited", {"retry_not_before": repr(later), "next_refresh_at": repr(later),
                          "retry_held_by": "retry_after"})  # fmt: skip

    async def dues() -> list[float]:
        return [await due(c) for c in cids]

    assert await watch.probe([crm], 5000.0) == []  # no refusal yet: nothing to probe
    said = "AADSTS7000222: The provided client secret keys for app 'x' are expired."
    assert await watch.refused(crm, "invalid_client", said, 5000.0) is True
    probed = await asyncio.gather(watch.probe([crm], 5001.0), watch.probe([crm], 5001.0))
    assert sorted(probed, key=len) == [[], [crm.name]]
    assert sorted(await dues()) == [5001.0, later, later]
    assert await watch.probe([crm], 5100.0) == []  # within the interval: no second probe
    assert await watch.accepted(crm, 5200.0) is True
    # The probe is due already; the two held back are due now, their hold gone.
    assert sorted(await dues()) == [5001.0, 5200.0, 5200.0]
    assert await due("limited") == later
    for cid in cids:
        stored = await redis.hgetall(keys.connection(crm.name, cid))
        assert list(stored) == ["next_refresh_at"]


async def test_a_warning_resolves_once_when_the_date_moves_beyond_it(
    runtime: Runtime, redis: Redis, settings: Settings
) -> None:
    """Rotated early: the file's new date is more than 30 days ahead (or gone); the warning
    sent resolves once (client_secret.accepted), and an integration never warned says
    nothing."""
    crm, other, watch = dated(int(EXPIRES)), dated(int(EXPIRES)), runtime.secrets
    assert await watch.check_expiring([crm], EXPIRES - 20 * DAY) == [crm.name]
    moved = replace(crm, client_secret_expires_at=EXPIRES + 365 * DAY)
    assert await watch.check_expiring([moved, other], EXPIRES - 19 * DAY) == [other.name]
    assert await watch.check_expiring([moved], EXPIRES - 18 * DAY) == []
    [resolved] = await of(redis, settings, events.CLIENT_SECRET_ACCEPTED, crm.name)
    assert resolved["expired_since"] is None
    assert resolved["renewed_until"] == "2028-06-29T00:00:00Z"
    # Removed from the file after a warning: resolved too, with no date.
    gone = replace(other, client_secret_expires_at=None)
    assert await watch.check_expiring([gone], EXPIRES - 18 * DAY) == []
    [cleared] = await of(redis, settings, events.CLIENT_SECRET_ACCEPTED, other.name)
    assert cleared["renewed_until"] is None


async def test_a_code_exchange_says_whether_the_secret_works(
    runtime: Runtime, redis: Redis, settings: Settings, fakes: Fakes
) -> None:
    """A code exchange refused for an expired secret raises the integration's one alert (no
    alert.exchange_failed per user); a successful exchange resolves it."""
    service, before = runtime.exchange, len(await stream_events(redis, settings.key_prefix))

    async def exchange(reply: Reply | None = None) -> dict[str, Any]:
        callback = await consent(service, "generic", f"user-{uuid.uuid4().hex[:8]}", time.time())
        if reply is not None:
            fakes.generic.script(callback["code"], reply)
        return await service.exchange_code(
            state=callback["state"], code=callback.get("code"), error=None,
            error_description=None, attempt=attempt(), now=time.time(),
        )  # fmt: skip

    said = "AADSTS7000222: The provided client secret keys are expired."
    expired = json.dumps({"error": "invalid_client", "error_description": said})
    for _ in range(2):
        failed = await exchange(Reply(status=401, body=expired.encode()))
        assert failed["error"] == "invalid_client"
    assert (await exchange())["error"] is None
    kinds = [t for t, d in (await stream_events(redis, settings.key_prefix))[before:]
             if d.get("integration") == "generic"]  # fmt: skip
    assert kinds.count(events.CLIENT_SECRET_EXPIRED) == 1
    assert kinds.count(events.CLIENT_SECRET_ACCEPTED) == 1
    assert events.EXCHANGE_FAILED_ALERT not in kinds
    assert kinds.count(events.EXCHANGE_FAILED) == 2
