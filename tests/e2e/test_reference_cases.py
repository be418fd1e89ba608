"""The reference cases: each vendor behind the right preset works, behind `custom` it
raises alert.refresh_token_missing with a diagnosis whose first fix is the right one."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    connect,
    consent,
    events_for,
    exchange,
    stored_connection,
)
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

MESSAGE = "Refresh token is not present and access token lifetime is too short."


def new_id() -> str:
    return "user-" + uuid.uuid4().hex[:12]


async def test_google_preset_gets_a_refresh_token(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "google", cid, login_hint=cid)
    grant = fakes.google.grant_for(callback["code"])
    assert grant.params["access_type"] == "offline"
    assert grant.params["prompt"] == "consent"

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "refreshable"
    assert summary["status"] == "active"
    assert summary["refresh_token_received"] is True
    connection = await stored_connection(tl, "google", cid)
    assert connection.has_refresh_token and connection.lifetime_seconds == 3599
    types = [t for t, _ in await events_for(redis, settings, cid)]
    assert types == ["connection.authorized"]


async def test_google_behind_custom_raises_the_alert_with_use_provider_google_first(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    summary = await connect(tl, worker, "google-as-custom", cid, login_hint=cid)

    assert summary["outcome"] == "refresh_token_missing"
    assert summary["status"] == "degraded"
    events = dict(await events_for(redis, settings, cid))
    alert = events["alert.refresh_token_missing"]
    assert alert["message"] == MESSAGE
    assert alert["provider"] == "custom"
    assert alert["access_token_lifetime_seconds"] == 3599
    assert alert["minimum_lifetime_days"] == 30
    assert alert["requested"]["params"]["prompt"] == "select_account"
    fixes = [c["fix"] for c in alert["diagnosis"]]
    assert fixes[0].startswith('Use provider "google"')
    assert any("access_type=offline" in f for f in fixes)
    assert any("prompt=consent" in f for f in fixes)
    assert (await stored_connection(tl, "google-as-custom", cid)).status == "degraded"


async def test_google_reconsent_with_select_account_yields_no_refresh_token(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    user = new_id()
    first = await connect(tl, worker, "google-select-account", user + "-a", login_hint=user)
    second = await connect(tl, worker, "google-select-account", user + "-b", login_hint=user)

    assert first["refresh_token_received"] is True  # first consent: Google gives one
    assert second["outcome"] == "refresh_token_missing"
    alert = dict(await events_for(redis, settings, user + "-b"))["alert.refresh_token_missing"]
    assert len(alert["diagnosis"]) == 1
    assert "prompt=select_account" in alert["diagnosis"][0]["cause"]
    assert "prompt=consent" in alert["diagnosis"][0]["fix"]


async def test_microsoft_preset_requests_offline_access_and_gets_a_refresh_token(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    callback = await consent(tl, "microsoft", cid)
    assert "offline_access" in fakes.microsoft.grant_for(callback["code"]).scopes

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "refreshable"
    connection = await stored_connection(tl, "microsoft", cid)
    # The Microsoft quirk: offline_access is granted but never echoed in `scope`.
    assert connection.scopes_granted is not None
    assert "offline_access" not in connection.scopes_granted


async def test_microsoft_behind_custom_raises_the_alert(
    tl: Tokenlife, worker: WorkerHandle, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    summary = await connect(tl, worker, "microsoft-as-custom", cid)

    assert summary["outcome"] == "refresh_token_missing"
    alert = dict(await events_for(redis, settings, cid))["alert.refresh_token_missing"]
    fixes = [c["fix"] for c in alert["diagnosis"]]
    assert fixes[0].startswith('Use provider "microsoft"')
    assert "Add offline_access" in fixes[1]


async def test_microsoft_user_refusing_offline_access_is_not_blamed_on_the_scope_echo(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    fakes.microsoft.users_refusing_offline_access.add(cid)
    summary = await connect(tl, worker, "microsoft", cid, login_hint=cid)

    assert summary["outcome"] == "refresh_token_missing"
    alert = dict(await events_for(redis, settings, cid))["alert.refresh_token_missing"]
    # Microsoft never echoes offline_access, so its absence proves nothing: no such cause.
    assert all("granted scope" not in c["cause"] for c in alert["diagnosis"])
    assert "Everything tokenlife knows" in alert["diagnosis"][0]["cause"]


async def test_custom_30_day_token_without_refresh_token_is_long_lived(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], Reply(lifetime=30 * 86400))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "long_lived"
    assert summary["status"] == "active"
    assert [t for t, _ in await events_for(redis, settings, cid)] == ["connection.authorized"]


async def test_custom_29_day_token_raises_the_alert(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic", cid)
    fakes.generic.script(callback["code"], Reply(lifetime=29 * 86400))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "refresh_token_missing"
    alert = dict(await events_for(redis, settings, cid))["alert.refresh_token_missing"]
    assert alert["access_token_lifetime_seconds"] == 29 * 86400
    # A generic OIDC server: offline_access is the first thing to try.
    assert "offline_access" in alert["diagnosis"][0]["fix"]


async def test_integration_threshold_of_7_days_accepts_a_29_day_token(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic-7d", cid)
    fakes.generic.script(callback["code"], Reply(lifetime=29 * 86400))

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "long_lived"
    # generic-7d authenticates with client_secret_post: the secret travelled in the body.
    request = fakes.generic.token_requests[-1]
    assert request["client_id"] == "generic-client"


async def test_discovered_oidc_provider_with_offline_access_is_refreshable(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes
) -> None:
    cid = new_id()
    callback = await consent(tl, "generic-offline", cid)
    grant = fakes.generic.grant_for(callback["code"])
    assert "offline_access" in grant.scopes and grant.params["prompt"] == "consent"

    summary = await exchange(worker, state=callback["state"], code=callback["code"])

    assert summary["outcome"] == "refreshable"
