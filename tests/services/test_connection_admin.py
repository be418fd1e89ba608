"""RefreshNow against the real Redis and the fake provider, one test per branch that
ends before the provider is asked: a busy connection, none stored, no refresh token, a
status that already says the user must reconnect."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support import Fakes
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import (
    ConnectionBusyError,
    ReauthorizationRequiredError,
    UnknownConnectionError,
)
from tokenlife.runtime import Runtime
from tokenlife.services.connection_admin import RefreshNow, list_connections

INTEGRATION = "generic"


def refresh_now(runtime: Runtime, wait: float = 2.0) -> RefreshNow:
    return RefreshNow(
        integrations=runtime.config.integrations, store=runtime.tokens, locks=runtime.locks,
        refresher=runtime.refresher, provider_concurrency=5, wait_seconds=wait,
    )  # fmt: skip


async def stored(runtime: Runtime, *, refresh: bool = True, status: Status = Status.ACTIVE) -> str:
    cid = "adm-" + uuid.uuid4().hex[:10]
    now = time.time()
    tokens = TokenSet(
        access_token="access-" + uuid.uuid4().hex, token_type="Bearer",
        refresh_token="refresh-" + uuid.uuid4().hex if refresh else None,
        expires_at=now + 3600, lifetime_seconds=3600, lifetime_source="expires_in",
        granted_scopes=("openid",),
    )  # fmt: skip
    await runtime.tokens.save(
        integration=INTEGRATION, connection_id=cid, provider="custom", tokens=tokens,
        verdict=Verdict.REFRESHABLE if refresh else Verdict.REFRESH_TOKEN_MISSING,
        status=status, scopes_requested=("openid",), next_check_at=None, now=now,
    )  # fmt: skip
    return cid


async def test_a_connection_held_by_a_refresh_past_the_wait_is_busy(runtime: Runtime) -> None:
    cid = await stored(runtime)
    assert await runtime.locks.acquire(INTEGRATION, cid) is not None  # a worker's refresh

    with pytest.raises(ConnectionBusyError):
        await refresh_now(runtime, wait=0.2).refresh(INTEGRATION, cid)


async def test_an_unknown_connection_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(UnknownConnectionError):
        await refresh_now(runtime).refresh(INTEGRATION, "nobody-" + uuid.uuid4().hex)


@pytest.mark.parametrize(
    ("refresh", "status", "reason"),
    [
        (False, Status.DEGRADED, "no refresh token"),
        (True, Status.REAUTHORIZATION_REQUIRED, "status"),
    ],
)
async def test_what_no_refresh_can_help_never_reaches_the_provider(
    runtime: Runtime, fakes: Fakes, refresh: bool, status: Status, reason: str
) -> None:
    cid = await stored(runtime, refresh=refresh, status=status)
    asked = len(fakes.generic.token_requests)

    with pytest.raises(ReauthorizationRequiredError, match=reason):
        await refresh_now(runtime).refresh(INTEGRATION, cid)

    assert len(fakes.generic.token_requests) == asked
    # The lease was given back: a refresh can claim the connection at once.
    assert await runtime.locks.acquire(INTEGRATION, cid) is not None


async def test_list_filters_by_status(runtime: Runtime) -> None:
    active, stuck = await stored(runtime), await stored(runtime, status=Status.DEGRADED)
    found = await list_connections(runtime.scan, [INTEGRATION], time.time(), Status.DEGRADED)
    ids = [c.connection_id for c in found]
    assert stuck in ids and active not in ids
    assert ids == sorted(ids)
