"""GET /api/connections' walk (adapters/connection_listing.py): every connection exactly once
across pages of any size, the status filters served by the indexes (and the lapsed tokens),
pages never over their limit, and cursors it never gave refused."""

from __future__ import annotations

import base64

import pytest
from redis.asyncio import Redis

from tokenlife.adapters.connection_listing import ConnectionListing
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import UsageError

NOW = 1_800_000_000.0


def _tokens(expires_at: float) -> TokenSet:
    return TokenSet(access_token="at", token_type="Bearer", refresh_token="rt",
                    expires_at=expires_at, lifetime_seconds=3600, lifetime_source="expires_in",
                    granted_scopes=None)  # fmt: skip


async def _fleet(store: TokenStore) -> dict[str, set[str]]:
    """60 connections of two integrations: stored active (fresh or with a lapsed token),
    degraded and reauthorization_required. Returns the ids expected per effective status."""
    expected: dict[str, set[str]] = {s.value: set() for s in Status}
    for n in range(60):
        integration = "crm" if n % 2 else "hr"
        cid = f"c{n}"
        stored, lapsed = [(Status.ACTIVE, False), (Status.ACTIVE, True), (Status.DEGRADED, False),
                          (Status.REAUTHORIZATION_REQUIRED, False)][n % 4]  # fmt: skip
        await store.save(
            integration=integration, connection_id=cid, provider="custom",
            tokens=_tokens(NOW - 10 if lapsed else NOW + 3600), verdict=Verdict.REFRESHABLE,
            status=stored, scopes_requested=(), now=NOW - 100,
            next_check_at=None if stored is Status.REAUTHORIZATION_REQUIRED else NOW + 50,
        )  # fmt: skip
        shown = Status.DEGRADED if lapsed else stored
        expected[shown.value].add(f"{integration}/{cid}")
    return expected


async def _walk(listing: ConnectionListing, status: Status | None, limit: int,
                integrations: tuple[str, ...] = ("crm", "hr")) -> list[str]:  # fmt: skip
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await listing.page(integrations, status, NOW, limit, cursor)
        assert len(page.connections) <= limit
        if status is not None:
            assert {c.status for c in page.connections} <= {status}
        seen += [f"{c.integration}/{c.connection_id}" for c in page.connections]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the walk never ended")


@pytest.mark.parametrize("limit", [1, 7, 500])
async def test_every_connection_comes_once_under_every_filter(
    redis: Redis, keys: Keys, store: TokenStore, cipher: Cipher, limit: int
) -> None:
    expected = await _fleet(store)
    listing = ConnectionListing(redis, keys, cipher)

    everything = await _walk(listing, None, limit)
    assert sorted(everything) == sorted(set().union(*expected.values()))
    for status in Status:
        found = await _walk(listing, status, limit)
        assert len(found) == len(set(found)), status
        assert set(found) == expected[status.value], status
    only_hr = await _walk(listing, Status.DEGRADED, limit, ("hr",))
    assert set(only_hr) == {c for c in expected["degraded"] if c.startswith("hr/")}


async def test_a_connection_that_recovers_leaves_the_degraded_index(
    redis: Redis, keys: Keys, store: TokenStore, cipher: Cipher
) -> None:
    await _fleet(store)
    listing = ConnectionListing(redis, keys, cipher)
    connection = await store.get("hr", "c2")  # stored degraded
    await store.update(connection, now=NOW, set_fields={"status": Status.ACTIVE.value})
    assert "hr/c2" not in await _walk(listing, Status.DEGRADED, 10)
    await store.delete("crm", "c3", "custom")  # stored reauthorization_required
    assert "crm/c3" not in await _walk(listing, Status.REAUTHORIZATION_REQUIRED, 10)


@pytest.mark.parametrize(
    "plain", ["x", '[99,0,"",0]', '[-1,0,"",0]', "[0,0,0]", '[0,0,"",1e999]', '[0,0,"",NaN]']
)
async def test_a_cursor_it_never_gave_is_refused(
    redis: Redis, keys: Keys, cipher: Cipher, plain: str
) -> None:
    """A cursor is sealed with the encryption key: one not sealed by it is refused, and so
    is one sealed around nonsense (the shard out of range, a number too large or NaN)."""
    listing = ConnectionListing(redis, keys, cipher)
    for cursor in (plain, cipher.encrypt(plain)):
        with pytest.raises(UsageError, match="cursor"):
            await listing.page(["crm"], None, NOW, 10, cursor)


async def test_a_cursor_names_no_connection_in_plain_text(
    redis: Redis, keys: Keys, store: TokenStore, cipher: Cipher
) -> None:
    """The last member a page read may be of an integration the caller's key doesn't
    cover: the cursor shows nothing of it."""
    await _fleet(store)
    page = await ConnectionListing(redis, keys, cipher).page(["hr"], Status.DEGRADED, NOW, 1)
    assert page.next_cursor is not None
    sealed = base64.urlsafe_b64decode(page.next_cursor)  # a Fernet token: ciphertext only
    assert b"crm:" not in sealed and b"hr:" not in sealed
    assert "hr:" in cipher.decrypt(page.next_cursor)  # what it seals


async def test_a_page_ending_inside_a_batch_resumes_after_its_last_one_despite_deletes(
    redis: Redis, keys: Keys, cipher: Cipher
) -> None:
    """A small set comes back whole from one SSCAN: the page cut inside it resumes after the
    last member it returned, so deleting one already listed skips nobody."""
    one_shard = Keys(keys.prefix + "-one", shards=1)
    store = TokenStore(redis, one_shard, cipher)
    for n in range(12):
        await store.save(
            integration="crm", connection_id=f"c{n:02}", provider="custom",
            tokens=_tokens(NOW + 3600),
            verdict=Verdict.REFRESHABLE, status=Status.ACTIVE, scopes_requested=(),
            next_check_at=NOW + 50, now=NOW,
        )  # fmt: skip
    listing = ConnectionListing(redis, one_shard, cipher)
    first = await listing.page(["crm"], None, NOW, 5)
    listed = [c.connection_id for c in first.connections]
    assert len(listed) == 5 and first.next_cursor is not None
    await store.delete("crm", listed[0], "custom")
    rest: list[str] = []
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = await listing.page(["crm"], None, NOW, 5, cursor)
        rest += [c.connection_id for c in page.connections]
        cursor = page.next_cursor
    assert sorted(listed + rest) == [f"c{n:02}" for n in range(12)]
