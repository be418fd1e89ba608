"""`tokenlife keys rotate | status`: every stored secret re-encrypted under the first key
of TOKENLIFE_ENCRYPTION_KEYS, and a count of the records each key is still needed for.

Safe while workers run: a record is re-sealed only if it is as it was read (its version,
and each ciphertext), and the version is not bumped, so a refresh in flight still lands
its compare-and-set (reseal.lua). A record that changed meanwhile is read again; what a
refresh wrote is already under the first key when every process has the new key list.
Resumable by being idempotent: a record already under the first key is only read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tokenlife.adapters.sealed_records import RecordKind, SealedRecord, SealedRecords

# A record that changes under every one of this many tries (a refresh each time) is left
# as found and counted; the next run picks it up.
RESEAL_TRIES = 5


class KeyRing:
    """Which configured key decrypts a value. Fernet tokens carry no key id
    (https://github.com/fernet/spec/blob/master/Spec.md), so each key is tried in order."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernets = [Fernet(k) for k in keys]
        # No key at all (the doctor without TOKENLIFE_ENCRYPTION_KEYS): nothing decrypts,
        # and MultiFernet refuses an empty list.
        self._multi = MultiFernet(self._fernets) if self._fernets else None

    def index(self, ciphertext: str) -> int | None:
        """0 for the first key; None when no key decrypts it."""
        for position, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(ciphertext.encode("ascii"))
            except (InvalidToken, ValueError):
                continue
            return position
        return None

    def reseal(self, ciphertext: str) -> str:
        # Keeps the token's timestamp; https://cryptography.io/en/latest/fernet/
        # (MultiFernet.rotate).
        if self._multi is None:
            raise ValueError("no encryption key to re-seal with")
        return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")


@dataclass
class KeyCensus:
    """Records by the oldest key one of their values needs (0: the first key)."""

    by_key: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    undecryptable: int = 0  # no configured key decrypts them: no rotation can help
    resealed: int = 0  # re-encrypted by this run
    changing: int = 0  # changed under every try; left under an old key for the next run
    undecryptable_keys: list[str] = field(default_factory=list)  # the first few, by Redis key
    # Connection hashes without a version: never re-sealed (no safe compare-and-set), so
    # those under an old key stay in on_old_keys until deleted (`connections delete`).
    unversioned: int = 0
    unversioned_keys: list[str] = field(default_factory=list)  # the first few, by Redis key
    complete: bool = False  # every record of the kinds asked for was visited

    @property
    def on_old_keys(self) -> int:
        return sum(n for position, n in self.by_key.items() if position > 0)

    def as_json(self, key_count: int) -> dict[str, object]:
        return {
            "records": sum(self.by_kind.values()),
            "records_by_kind": dict(sorted(self.by_kind.items())),
            "by_key": {str(i + 1): self.by_key.get(i, 0) for i in range(key_count)},
            "on_old_keys": self.on_old_keys,
            "undecryptable": self.undecryptable,
            "unversioned": self.unversioned,
            "resealed": self.resealed,
        }


class KeyRotation:
    def __init__(self, records: SealedRecords, ring: KeyRing, batch_size: int = 200) -> None:
        self._records = records
        self._ring = ring
        self._batch = batch_size

    async def total(self) -> int:
        return await self._records.count_connections()

    async def run(
        self,
        *,
        write: bool,
        progress: Callable[[int], None],
        kinds: Sequence[RecordKind] = tuple(RecordKind),
        limit: int | None = None,
        census: KeyCensus | None = None,
    ) -> KeyCensus:
        """Walk every sealed record of `kinds` in SCAN batches; with `write`, re-seal those
        under an old key. `progress` is told how many records each batch held. With
        `limit`, stop after that many records (the doctor's bounded sample); a `census`
        passed in holds what was counted even when the caller's timeout cancels the walk."""
        census = KeyCensus() if census is None else census
        seen = 0
        for kind in kinds:
            async for found in self._records.batches(kind, self._batch):
                # SCAN may return a key twice; counting it once per batch is enough.
                unique = list(dict.fromkeys(found))
                short = limit is not None and seen + len(unique) > limit
                if short:
                    unique = unique[: max(0, (limit or 0) - seen)]
                if unique:
                    records = await self._records.read(kind, unique)
                    for record in records:
                        await self._visit(record, census, write)
                    seen += len(records)
                    progress(len(unique))
                if short:
                    return census  # stopped short: not complete
        census.complete = True
        return census

    def _oldest_key(self, record: SealedRecord) -> int | None:
        positions = [self._ring.index(c) for c in record.ciphertexts()]
        if any(p is None for p in positions):
            return None
        return max((p for p in positions if p is not None), default=0)

    async def _visit(self, record: SealedRecord, census: KeyCensus, write: bool) -> None:
        oldest = self._oldest_key(record)
        tries = 0
        while write and oldest is not None and oldest > 0 and not record.unversioned:
            if tries == RESEAL_TRIES:
                census.changing += 1
                break
            tries += 1
            if await self._records.replace(record, record.resealed(self._ring.reseal)):
                census.resealed += 1
                oldest = 0
                break
            # Changed since it was read (a refresh, an exchange): read it again.
            again = await self._records.read(record.kind, [record.key])
            if not again:
                return  # deleted or expired meanwhile: nothing left to count
            record = again[0]
            oldest = self._oldest_key(record)
        census.by_kind[record.kind.value] += 1
        if record.unversioned:
            census.unversioned += 1
            if len(census.unversioned_keys) < 5:
                census.unversioned_keys.append(record.key)
        if oldest is None:
            census.undecryptable += 1
            if len(census.undecryptable_keys) < 5:
                census.undecryptable_keys.append(record.key)
        else:
            census.by_key[oldest] += 1
