"""Every Lua script the adapters run touches keys of one Redis Cluster slot: all its KEYS share
one hash tag (a Cluster refuses a script whose keys are in different slots). Checked on one
Redis by recording the KEYS of every EVALSHA/EVAL the adapters send, pipelined or not, while
each of them does its work over connections of many shards."""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.crc import key_slot

from tests.adapters.test_claim import in_shard, new_name, saved
from tokenlife.adapters import scripts
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.event_consumer import qualified
from tokenlife.adapters.exchange_store import Authorized, ExchangeStore
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.locks import Locks
from tokenlife.adapters.pending_events import PendingEvents
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.adapters.provider_breakers import Hold, ProviderBreakers
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.status_counts import StatusCounts
from tokenlife.adapters.token_store import Backoff, TokenStore
from tokenlife.core.authorization import PendingAuthorization
from tokenlife.core.events import CONNECTION_AUTHORIZED, make_event
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.provider_breaker import BreakerPolicy
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.settings import Settings

POLICY = BreakerPolicy(min_failures=10, failure_rate=0.5, window_seconds=60, probe_seconds=30,
                       pause_seconds=600, recovery_rate=10)  # fmt: skip
_TAG = re.compile(r"\{([^}]*)\}")

Call = tuple[str, list[str]]  # (script name, KEYS)


def _names() -> dict[str, str]:
    """Script name by the SHA-1 its EVALSHA names."""
    found = {}
    for entry in resources.files(scripts.__package__).iterdir():
        if entry.name.endswith(".lua"):
            name = entry.name.removesuffix(".lua")
            found[hashlib.sha1(scripts._source(name).encode()).hexdigest()] = name
    return found


def _note(calls: list[Call], names: dict[str, str], args: tuple[Any, ...]) -> None:
    command = str(args[0]).upper()
    if command not in ("EVALSHA", "EVAL"):
        return
    script = str(args[1])
    name = names.get(script, "?") if command == "EVALSHA" else "(eval)"
    calls.append((name, [str(key) for key in args[3 : 3 + int(args[2])]]))


class RecordingPipeline(Pipeline):
    calls: list[Call]
    names: dict[str, str]

    def pipeline_execute_command(self, *args: Any, **options: Any) -> Pipeline:
        _note(self.calls, self.names, args)
        return cast(Pipeline, super().pipeline_execute_command(*args, **options))  # type: ignore[no-untyped-call]


class Recording(Redis):
    """A client that notes the KEYS of every script it sends, in a pipeline or not."""

    calls: list[Call]
    names: dict[str, str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        _note(self.calls, self.names, args)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = RecordingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.calls, pipe.names = self.calls, self.names
        return pipe


@pytest.fixture
async def recording(settings: Settings) -> AsyncIterator[Recording]:
    client = cast(Recording, Recording.from_url(settings.redis_url, decode_responses=True))
    assert isinstance(client, Recording)
    client.calls, client.names = [], _names()
    yield client
    await client.aclose()


def tags(key: str) -> str:
    """What Redis Cluster hashes of a key: its first {tag}, else the whole key."""
    found = _TAG.search(key)
    return found.group(1) if found and found.group(1) else key


async def test_every_script_the_adapters_run_has_its_keys_in_one_slot(
    recording: Recording, settings: Settings, cipher: Cipher
) -> None:
    redis = recording
    keys = Keys(f"{settings.key_prefix}-slots-{uuid.uuid4().hex[:8]}", shards=16)
    store = TokenStore(redis, keys, cipher)
    locks = Locks(redis, keys)
    schedule = RefreshSchedule(redis, keys)
    breakers = ProviderBreakers(redis, keys)
    pending = PendingStore(redis, keys, cipher)
    exchanges = ExchangeStore(redis, keys, cipher)
    provider, scope, now = new_name("provider"), new_name("host"), time.time()

    # Connections in several shards: saved, claimed, updated (with a lease, an event and a
    # backoff), given back, claimed due, pulled forward, counted, deleted.
    conns = []
    for shard in (0, 5, 11, 15):
        integration = new_name("it")
        conns.append(await saved(store, provider, integration=integration, expires_in=3600,
                                 connection_id=in_shard(keys, integration, shard)))  # fmt: skip
    for integration, cid, _ in conns:
        claim = await locks.claim(integration, cid, provider, 10, 30)
        assert claim.kind == "ok" and claim.connection is not None and claim.lease is not None
        event = make_event(
            CONNECTION_AUTHORIZED, event_id=uuid.uuid4().hex, now=now,
            integration=integration, connection_id=cid, provider=provider,
        )  # fmt: skip
        assert await store.update(
            claim.connection, now=now, schedule_at=now + 900, set_fields={"last_error": "timeout"},
            backoff=Backoff.ADD, event=event, lease=claim.lease,
        )  # fmt: skip
        await redis.hset(keys.connection(integration, cid), "consecutive_failures", "3")
        lease = await locks.claim(integration, cid, provider, 10)
        assert lease.lease is not None
        await locks.give_back(lease.lease)
        token = await locks.acquire(integration, cid)
        assert token is not None
        await locks.release(integration, cid, token)
    # Due in every shard they are in: each of those shards' claim runs (a shard with none
    # due is not asked).
    for integration, cid, _ in conns:
        schedule_key = keys.schedule_of(integration, cid)
        await redis.zadd(schedule_key, {keys.member(integration, cid): now - 1}, xx=True)
    assert len(await schedule.claim_due(300, limit=64)) == len(conns)
    for integration, cid, _ in conns:
        shard = keys.shard(integration, cid)
        moved = await schedule.pull_forward(provider, shard, 10, 1.0, random.Random(1), 0)
        assert moved == 1
    await redis.delete(*(keys.status_counts(shard) for shard in keys.all_shards))
    assert (await StatusCounts(redis, keys).read([c[0] for c in conns], now))["active"] == 4

    # A breaker opens, holds a claim in its shard's gate and releases it again.
    assert (await breakers.record(scope, now, POLICY, answered=0, probe_answered=0,
                                  failures={"timeout": 20})).state == "opened"  # fmt: skip
    integration, cid, _ = conns[1]
    hold = Hold(scope, now + 1, POLICY.probe_seconds, POLICY.pause_seconds)
    assert (await locks.claim(integration, cid, provider, 10, None, hold)).kind == "held"
    assert await breakers.close(scope, now + 2, rate=10) == 1

    # An authorization: its state is drawn in the connection's shard and ends in one save.
    crm = resolve("crm", IntegrationConfig(provider="google", client_id="client-id",
                          redirect_uri="http://127.0.0.1:9/oauth/callback"),
                          load_presets()["google"], "secret", 30.0)  # fmt: skip
    cid = in_shard(keys, crm.name, 7)
    state = pending.new_state(crm.name, cid)
    await pending.put(state, PendingAuthorization(
        integration=crm.name, connection_id=cid, redirect_uri="http://127.0.0.1:9/cb",
        params={"response_type": "code"}, created_at=now, verifier=None,
    ))  # fmt: skip
    assert (await pending.claim(state, f"task-{uuid.uuid4()}")).pending is not None
    authorized = make_event(CONNECTION_AUTHORIZED, event_id=uuid.uuid4().hex, now=now,
                            integration=crm.name, connection_id=cid)  # fmt: skip
    saved_state = await exchanges.save(
        state,
        Authorized(crm, cid, conns[0][2], Verdict.REFRESHABLE, Status.ACTIVE,
                   ("openid",), now + 3000, None),
        now, events=[authorized], summary={"outcome": "authorized"},
        refusal=(authorized, {"outcome": "refused"}),
    )  # fmt: skip
    assert saved_state.outcome == "saved"
    other = in_shard(keys, crm.name, 3)
    failed = pending.new_state(crm.name, other)
    await pending.put(failed, PendingAuthorization(
        integration=crm.name, connection_id=other, redirect_uri="http://127.0.0.1:9/cb",
        params={"response_type": "code"}, created_at=now, verifier=None,
    ))  # fmt: skip
    await pending.claim(failed, f"task-{uuid.uuid4()}")
    await pending.finish(failed, authorized, {"outcome": "failed"})

    for integration_name, cid, _ in conns:
        assert await store.delete(integration_name, cid, provider)

    # An app's event handlers keep the entries they hold, one script per shard's stream.
    held = []
    for shard in (2, 9):
        stream = keys.events(shard)
        entry = await redis.xadd(stream, {"type": "token.refreshed", "data": "{}"})
        await redis.xgroup_create(stream, "app", id="0")
        await redis.xreadgroup("app", "app-1", {stream: ">"})
        held.append(qualified(str(entry), shard))
    kept = await PendingEvents(redis, keys, "app", "app-1", block_ms=0, count=10).keep(held)
    assert sorted(kept) == sorted(held)

    ran = {name for name, _ in redis.calls}
    assert {"save_connection", "update_connection", "delete_connection", "claim_connection",
            "take_slot", "release_lock", "claim_due", "pull_forward", "count_statuses",
            "finish_recount", "breaker_record", "breaker_release", "put_pending",
            "claim_state", "finish_exchange", "keep_events"} <= ran, ran  # fmt: skip
    assert "?" not in ran and "(eval)" not in ran, ran
    for name, script_keys in redis.calls:
        assert script_keys, name
        assert len({tags(key) for key in script_keys}) == 1, (name, script_keys)
        assert len({key_slot(key.encode()) for key in script_keys}) == 1, (name, script_keys)
    # Scripts of a connection's keys ran in each of its shards, not all in one.
    touched = {tags(keys_[0]) for name, keys_ in redis.calls if name == "update_connection"}
    assert len(touched) == len(conns)
