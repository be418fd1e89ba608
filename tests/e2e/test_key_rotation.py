"""`tokenlife keys rotate | status` against the real Redis while the real worker refreshes.

The session's settings carry two keys, (new, old), as every process does during a
rotation. The test puts its records under the old key first, rotates while the worker
refreshes (one refresh held in flight by a slow provider), then drops the old key and
refreshes every connection with the new key alone: nothing may be lost.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from redis.asyncio import Redis

from tests.fakes.base import Reply
from tests.support import (
    Fakes,
    WorkerHandle,
    consent,
    event_types,
    exchange,
    make_due,
    run_refresh_tick,
    stored_connection,
    wait_until,
    worker_environment,
)
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.sealed_records import RecordKind, SealedRecords
from tokenlife.adapters.token_store import TokenStore
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.services.connection_admin import RefreshNow
from tokenlife.services.key_rotation import KeyCensus, KeyRing, KeyRotation
from tokenlife.services.refresh import Outcome
from tokenlife.settings import Settings

INTEGRATION = "generic-offline"


def keys_command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenlife.cli", "keys", *args, "--json"],
        env=worker_environment(settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def census(redis: Redis, settings: Settings, keys: tuple[str, ...], write: bool) -> KeyCensus:
    rotation = KeyRotation(
        SealedRecords(redis, Keys(settings.key_prefix, settings.redis_shards)), KeyRing(keys), 100
    )
    return await rotation.run(write=write, progress=lambda _: None)


async def connected(tl: Tokenlife, worker: WorkerHandle, cid: str) -> str:
    callback = await consent(tl, INTEGRATION, cid, login_hint=cid)
    summary = await exchange(worker, state=callback["state"], code=callback["code"])
    assert summary["refresh_token_received"], summary
    return callback["code"]  # the fake's family id


async def test_rotate_while_the_worker_refreshes_then_the_old_key_goes_and_nothing_is_lost(
    tl: Tokenlife, worker: WorkerHandle, fakes: Fakes, redis: Redis, settings: Settings
) -> None:
    new, old = settings.encryption_keys
    only_new = settings.model_copy(update={"encryption_keys": (new,)})
    # Whatever earlier tests left that no key reads (damaged on purpose) stays so.
    damaged_before = (await census(redis, settings, (new,), write=False)).undecryptable
    cids = ["rot-" + uuid.uuid4().hex[:10] for _ in range(5)]
    families = dict(
        zip(cids, await asyncio.gather(*(connected(tl, worker, c) for c in cids)), strict=True)
    )
    await tl.authorize_url(INTEGRATION, "rot-pending")  # a PKCE verifier, sealed too
    # Back to before the rotation: everything under the old key.
    await census(redis, settings, (old, new), write=True)
    before = keys_command(settings, "status")
    assert before.returncode == 6, before.stderr
    assert json.loads(before.stdout)["by_key"]["2"] >= len(cids) + 1

    slow = cids[0]
    both_keys = Keys(settings.key_prefix, settings.redis_shards)
    both = TokenStore(redis, both_keys, Cipher(settings.encryption_keys))
    slow_token = (await both.tokens(INTEGRATION, slow)).refresh_token
    fakes.generic.script_refresh(families[slow], Reply(delay=0.6))  # under the 1 s HTTP timeout
    for cid in cids:
        await make_due(redis, settings, INTEGRATION, cid)
    tick = asyncio.ensure_future(run_refresh_tick(worker))
    await wait_until(lambda: _true(presented(fakes, slow_token)), timeout=10,
                     what="the slow refresh in flight")  # fmt: skip
    # Re-sealed while its refresh is in flight: the refresh's compare-and-set must still land.
    records = SealedRecords(redis, Keys(settings.key_prefix, settings.redis_shards))
    [record] = await records.read(RecordKind.CONNECTION, [both_keys.connection(INTEGRATION, slow)])
    assert await records.replace(record, record.resealed(KeyRing(settings.encryption_keys).reseal))
    assert fakes.generic.families[families[slow]].refreshes == 0, "answered too soon"
    # Everything else, while the worker's other refreshes run.
    rotated = await census(redis, settings, settings.encryption_keys, write=True)
    await tick

    async def all_refreshed() -> bool:
        kinds = [await event_types(redis, settings, c) for c in cids]
        return all("token.refreshed" in k for k in kinds)

    await wait_until(all_refreshed, timeout=20, what="every connection refreshed")
    # The refreshes rewrote most under the new key themselves; the pending one is re-sealed.
    assert rotated.resealed >= 1 and rotated.on_old_keys == 0 and rotated.changing == 0
    for cid in cids:
        # Each refresh landed its compare-and-set, the slow one's re-sealed under it too.
        assert (await stored_connection(tl, INTEGRATION, cid)).version == 2
        family = fakes.generic.families[families[cid]]
        assert family.refreshes == 1 and family.reuse_detected == 0 and not family.revoked
        assert not [t for t in await event_types(redis, settings, cid) if "lost" in t]

    # The old key removed: every record decrypts, the status command agrees (exit 0)...
    after = await census(redis, settings, (new,), write=False)
    assert after.undecryptable == damaged_before
    status = keys_command(only_new, "status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["undecryptable"] == damaged_before
    # ... and each connection refreshes with the new key alone: the stored refresh token
    # is the live one at the provider.
    runtime = await Runtime.open(await load_config(only_new))
    try:
        refresh = RefreshNow(
            integrations=runtime.config.integrations, store=runtime.tokens,
            locks=runtime.locks, refresher=runtime.refresher, provider_concurrency=10,
            wait_seconds=10,
        )  # fmt: skip
        for cid in cids:
            result = await refresh.refresh(INTEGRATION, cid)
            assert result.outcome is Outcome.REFRESHED, result
            assert fakes.generic.families[families[cid]].reuse_detected == 0
    finally:
        await runtime.close()


async def _true(value: bool) -> bool:
    return value


def presented(fakes: Fakes, refresh_token: str | None) -> bool:
    return any(r.get("refresh_token") == refresh_token for r in fakes.generic.token_requests)
