"""The writes that end a refresh, against the real Redis: a retried write recognises its
own earlier attempt, token deadlines follow the tokens, and a provider's recovery brings
its waiting retries forward."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import replace

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import DEFAULT_SHARDS, Keys, shard_of
from tokenlife.adapters.refresh_schedule import RefreshSchedule
from tokenlife.adapters.token_store import Backoff, TokenStore
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.settings import Settings


def new_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def token_set(expires_in: float = 3600) -> TokenSet:
    return TokenSet(
        access_token="access-" + uuid.uuid4().hex,
        token_type="Bearer",
        refresh_token="refresh-" + uuid.uuid4().hex,
        expires_at=time.time() + expires_in,
        lifetime_seconds=int(expires_in),
        lifetime_source="expires_in",
        granted_scopes=("openid",),
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(f"{settings.key_prefix}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(redis: Redis, keys: Keys, settings: Settings) -> TokenStore:
    return TokenStore(
        redis, keys, Cipher(settings.encryption_keys or (Fernet.generate_key().decode(),))
    )


# The connections of a test share this shard (of the default count, the `keys` fixture's):
# a recovery seen in a shard pulls that shard's backoff set forward.
SHARD = 4


async def saved(
    store: TokenStore, provider: str = "okta", due_in: float = 3000, shard: int = SHARD
) -> tuple[str, str]:
    integration, cid = new_name("it"), new_name("conn")
    while shard_of(Keys.member(integration, cid), DEFAULT_SHARDS) != shard:
        cid = new_name("conn")
    await store.save(
        integration=integration, connection_id=cid, provider=provider, tokens=token_set(),
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=("openid",),
        next_check_at=time.time() + due_in, now=time.time(),
    )  # fmt: skip
    return integration, cid


async def test_a_retried_write_whose_first_attempt_landed_counts_as_written(
    store: TokenStore,
) -> None:
    """The EVALSHA reached Redis but its reply was lost: the retry is not a conflict."""
    integration, cid = await saved(store)
    before = await store.get(integration, cid)
    new = token_set()

    first = await store.update(before, now=time.time(), tokens=new, operation="op-1")
    retry = await store.update(before, now=time.time(), tokens=new, operation="op-1")

    assert first == retry == before.version + 1
    assert (await store.tokens(integration, cid)).refresh_token == new.refresh_token
    # Someone else's write from the same version is still a conflict, and so is ours once
    # another write has come after it.
    assert await store.update(before, now=time.time(), tokens=token_set(), operation="op-2") is None
    after = await store.get(integration, cid)
    assert await store.update(after, now=time.time(), set_fields={"last_error": "x"}) == first + 1
    assert await store.update(before, now=time.time(), tokens=new, operation="op-1") is None


async def test_a_write_without_an_operation_id_never_matches_an_earlier_one(
    store: TokenStore,
) -> None:
    integration, cid = await saved(store)
    before = await store.get(integration, cid)

    assert await store.update(before, now=time.time(), set_fields={"last_error": "a"}) is not None
    assert await store.update(before, now=time.time(), set_fields={"last_error": "a"}) is None


async def test_token_deadlines_follow_the_tokens(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration, cid = await saved(store)
    member = keys.member(integration, cid)
    # From the first save on (an exchange), not only after a refresh.
    stored = await store.get(integration, cid)
    assert await redis.zscore(keys.token_deadlines(SHARD), member) == stored.expires_at
    new = token_set(expires_in=60)

    await store.update(
        await store.get(integration, cid), now=time.time(), tokens=new,
        schedule_at=time.time() + 30,
    )  # fmt: skip
    assert await redis.zscore(keys.token_deadlines(SHARD), member) == new.expires_at

    await store.update(await store.get(integration, cid), now=time.time(), unschedule=True)
    assert await redis.zscore(keys.token_deadlines(SHARD), member) is None

    await store.update(
        await store.get(integration, cid), now=time.time(), tokens=replace(new, expires_at=None)
    )
    assert await redis.zscore(keys.token_deadlines(SHARD), member) is None


async def failing(redis: Redis, keys: Keys, integration: str, cid: str) -> None:
    await redis.hset(keys.connection(integration, cid), "consecutive_failures", "3")


async def test_pull_forward_only_drops_members_that_are_gone_or_no_longer_failing(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    schedule = RefreshSchedule(redis, keys)
    provider = new_name("provider")
    deleted = await saved(store, provider, due_in=900)
    recovered = await saved(store, provider, due_in=900)  # not failing (reconnected, say)
    for integration, cid in (deleted, recovered):
        await redis.zadd(
            keys.backoff(provider, SHARD), {keys.member(integration, cid): time.time()}
        )
    await redis.delete(keys.connection(*deleted))
    version = (await store.get(*recovered)).version

    assert (
        await schedule.pull_forward(
            provider, SHARD, limit=10, spread=1.0, rng=random.Random(3), least_wait=0
        )
        == 0
    )

    assert await redis.zcard(keys.backoff(provider, SHARD)) == 0
    assert not await redis.exists(keys.connection(*deleted))  # never re-created
    kept = await store.get(*recovered)
    assert kept.version == version
    assert kept.next_refresh_at == pytest.approx(time.time() + 900, abs=5)  # not moved


async def test_a_new_authorization_and_an_unschedule_leave_the_backoff_set(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration, cid = await saved(store, "okta")
    other = await saved(store, "okta")
    members = [keys.member(integration, cid), keys.member(*other)]
    await redis.zadd(keys.backoff("okta", SHARD), dict.fromkeys(members, time.time() + 600))

    await saved_again(store, integration, cid, "okta")  # a reconnect
    await store.update(await store.get(*other), now=time.time(), unschedule=True)

    assert await redis.zcard(keys.backoff("okta", SHARD)) == 0


async def saved_again(store: TokenStore, integration: str, cid: str, provider: str) -> None:
    await store.save(
        integration=integration, connection_id=cid, provider=provider, tokens=token_set(),
        verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=("openid",),
        next_check_at=time.time() + 3000, now=time.time(),
    )  # fmt: skip


async def test_a_failure_joins_the_providers_backoff_set_and_a_success_leaves_it(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    integration, cid = await saved(store, "okta")
    member, due = keys.member(integration, cid), time.time() + 600

    await store.update(
        await store.get(integration, cid), now=time.time(), schedule_at=due,
        set_fields={"last_error": "timeout"}, backoff=Backoff.ADD,
    )  # fmt: skip
    assert await redis.zscore(keys.backoff("okta", SHARD), member) == due

    await store.update(
        await store.get(integration, cid), now=time.time(), tokens=token_set(),
        backoff=Backoff.REMOVE,
    )  # fmt: skip
    assert await redis.zscore(keys.backoff("okta", SHARD), member) is None


async def test_a_recovery_brings_forward_waiting_retries_but_not_a_running_one(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    schedule = RefreshSchedule(redis, keys)
    provider = new_name("provider")
    waiting = [await saved(store, provider, due_in=900) for _ in range(3)]
    running = await saved(store, provider, due_in=900)
    soon = await saved(store, provider, due_in=0.5)  # due before any jitter: left alone
    for integration, cid in (*waiting, running, soon):
        connection = await store.get(integration, cid)
        assert connection.next_refresh_at is not None
        await failing(redis, keys, integration, cid)
        await redis.zadd(
            keys.backoff(provider, SHARD),
            {keys.member(integration, cid): connection.next_refresh_at},
        )
    await redis.set(keys.lock(*running), "someone")
    now = time.time()

    moved = await schedule.pull_forward(
        provider, SHARD, limit=10, spread=2.0, rng=random.Random(7), least_wait=0
    )

    assert moved == 3
    for integration, cid in waiting:
        due = (await store.get(integration, cid)).next_refresh_at
        score = await redis.zscore(keys.schedule(SHARD), keys.member(integration, cid))
        assert due is not None and now <= due <= time.time() + 2.0
        assert score == pytest.approx(due, abs=1e-6)
    assert (await store.get(*running)).next_refresh_at == pytest.approx(now + 900, abs=5)
    left = await redis.zrange(keys.backoff(provider, SHARD), 0, -1)
    assert left == [keys.member(*running)]  # for a later recovery


async def test_pull_forward_does_bounded_work(store: TokenStore, redis: Redis, keys: Keys) -> None:
    schedule = RefreshSchedule(redis, keys)
    provider = new_name("provider")
    for _ in range(5):
        integration, cid = await saved(store, provider, due_in=900)
        await failing(redis, keys, integration, cid)
        await redis.zadd(
            keys.backoff(provider, SHARD), {keys.member(integration, cid): time.time() + 900}
        )

    assert (
        await schedule.pull_forward(
            provider, SHARD, limit=2, spread=1.0, rng=random.Random(1), least_wait=0
        )
        == 2
    )
    assert await redis.zcard(keys.backoff(provider, SHARD)) == 3


async def test_pull_forward_keeps_a_fresh_failure_and_a_retry_after(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    """A connection that failed a moment ago (for a reason of its own, perhaps) keeps its
    backoff; one the provider told to wait (Retry-After) moves no earlier than that."""
    schedule = RefreshSchedule(redis, keys)
    provider = new_name("provider")
    fresh = await saved(store, provider, due_in=900)
    told = await saved(store, provider, due_in=900)
    long_ago = repr(time.time() - 60)
    not_before = time.time() + 120
    for integration, cid in (fresh, told):
        await failing(redis, keys, integration, cid)
        await redis.zadd(
            keys.backoff(provider, SHARD), {keys.member(integration, cid): time.time()}
        )
    await redis.hset(keys.connection(*fresh), "updated_at", repr(time.time()))
    await redis.hset(
        keys.connection(*told),
        mapping={"updated_at": long_ago, "retry_not_before": repr(not_before)},
    )

    moved = await schedule.pull_forward(
        provider, SHARD, limit=10, spread=1.0, rng=random.Random(5), least_wait=30
    )

    assert moved == 1
    assert (await store.get(*fresh)).next_refresh_at == pytest.approx(time.time() + 900, abs=5)
    assert await redis.zrange(keys.backoff(provider, SHARD), 0, -1) == [keys.member(*fresh)]
    assert (await store.get(*told)).next_refresh_at == pytest.approx(not_before, abs=1e-3)


async def test_pull_forward_measures_the_least_wait_from_the_last_failure_not_any_write(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    """A write after the failure (a rotation-conflict mark, say) doesn't restart the least
    wait; a failure recorded a moment ago keeps it, however old the record's last write."""
    schedule = RefreshSchedule(redis, keys)
    provider = new_name("provider")
    marked_since = await saved(store, provider, due_in=900)
    failed_just_now = await saved(store, provider, due_in=900)
    for integration, cid in (marked_since, failed_just_now):
        await failing(redis, keys, integration, cid)
        await redis.zadd(
            keys.backoff(provider, SHARD), {keys.member(integration, cid): time.time()}
        )
    await redis.hset(
        keys.connection(*marked_since),
        mapping={"last_failed_at": repr(time.time() - 60), "updated_at": repr(time.time())},
    )
    await redis.hset(
        keys.connection(*failed_just_now),
        mapping={"last_failed_at": repr(time.time()), "updated_at": repr(time.time() - 60)},
    )

    moved = await schedule.pull_forward(
        provider, SHARD, limit=10, spread=1.0, rng=random.Random(5), least_wait=30
    )

    assert moved == 1
    due = (await store.get(*marked_since)).next_refresh_at
    assert due is not None and due <= time.time() + 1.0
    kept = (await store.get(*failed_just_now)).next_refresh_at
    assert kept == pytest.approx(time.time() + 900, abs=5)
    assert await redis.zrange(keys.backoff(provider, SHARD), 0, -1) == [
        keys.member(*failed_just_now)
    ]


async def test_a_recovery_pulls_forward_the_retries_of_its_own_shard_only(
    store: TokenStore, redis: Redis, keys: Keys
) -> None:
    """Each shard has its provider's backoff set; a failure joins its connection's shard's
    set, and a shard's recovery moves that set: another shard's retries wait for a success
    seen there."""
    schedule = RefreshSchedule(redis, keys)
    provider = new_name("provider")
    here, there = await saved(store, provider, due_in=900), await saved(store, provider, 900, 11)
    for integration, cid in (here, there):
        await store.update(
            await store.get(integration, cid), now=time.time(), schedule_at=time.time() + 900,
            set_fields={"last_error": "timeout"}, backoff=Backoff.ADD,
        )  # fmt: skip
        await failing(redis, keys, integration, cid)
    assert await redis.zrange(keys.backoff(provider, SHARD), 0, -1) == [keys.member(*here)]
    assert await redis.zrange(keys.backoff(provider, 11), 0, -1) == [keys.member(*there)]
    now = time.time()

    moved = await schedule.pull_forward(
        provider, SHARD, limit=10, spread=1.0, rng=random.Random(2), least_wait=0
    )

    assert moved == 1
    due = (await store.get(*here)).next_refresh_at
    assert due is not None and now <= due <= time.time() + 1.0
    assert await redis.zscore(keys.schedule(SHARD), keys.member(*here)) == pytest.approx(due)
    assert (await store.get(*there)).next_refresh_at == pytest.approx(now + 900, abs=5)
    assert await redis.zcard(keys.backoff(provider, SHARD)) == 0
    assert await redis.zrange(keys.backoff(provider, 11), 0, -1) == [keys.member(*there)]

    assert (
        await schedule.pull_forward(
            provider, 11, limit=10, spread=1.0, rng=random.Random(2), least_wait=0
        )
        == 1
    )
    assert (await store.get(*there)).next_refresh_at == pytest.approx(time.time(), abs=2)
