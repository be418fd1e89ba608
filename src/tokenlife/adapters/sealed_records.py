"""The records in Redis that hold encrypted secrets, read and re-sealed for key rotation.

Three kinds hold ciphertexts (adapters/crypto.py): a connection's `access_token` and
`refresh_token` (TokenStore), a pending authorization's PKCE `verifier` (PendingStore, a
JSON string that lives 10 minutes) and the same record moved into an exchange's claim
while the code is exchanged (its `pending` field, up to two hours).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.keys import Keys

# A connection's encrypted fields (connection_record.token_fields).
CONNECTION_SECRETS = ("access_token", "refresh_token")


class RecordKind(StrEnum):
    CONNECTION = "connection"
    PENDING = "pending"
    EXCHANGE = "exchange"


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """One record as read: the stored values that hold a ciphertext, by field ('' is a
    string record's whole value), and the connection's version ('' for other kinds)."""

    kind: RecordKind
    key: str
    version: str
    values: dict[str, str]

    @property
    def unversioned(self) -> bool:
        """A connection hash without its `version` field: every reader takes it for
        corrupt, and re-sealing it could not be checked against a concurrent write."""
        return self.kind is RecordKind.CONNECTION and not self.version

    def ciphertexts(self) -> list[str]:
        found = []
        for raw in self.values.values():
            sealed = raw if self.kind is RecordKind.CONNECTION else _verifier(raw)
            if sealed is not None:
                found.append(sealed)
        return found

    def resealed(self, reseal: Callable[[str], str]) -> list[tuple[str, str, str]]:
        """[field, stored value, the value with every ciphertext passed through reseal]."""
        changes = []
        for field, raw in self.values.items():
            if self.kind is RecordKind.CONNECTION:
                changes.append((field, raw, reseal(raw)))
                continue
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("verifier"), str):
                record["verifier"] = reseal(record["verifier"])
                changes.append((field, raw, json.dumps(record)))
        return changes


def _verifier(raw: str) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    verifier = record.get("verifier") if isinstance(record, dict) else None
    return verifier if isinstance(verifier, str) else None


class SealedRecords:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        # SCAN MATCH patterns, built by Keys itself ("*" in place of the variable parts).
        self._patterns = {
            RecordKind.CONNECTION: keys.pattern("conn"),
            RecordKind.PENDING: keys.pattern("pending"),
            RecordKind.EXCHANGE: keys.pattern("exchanging"),
        }
        self._sets = keys.pattern("conns")
        self._reseal = scripts.register(redis, "reseal")

    async def batches(self, kind: RecordKind, count: int) -> AsyncIterator[list[str]]:
        """The keys of `kind` in batches of `count`, by SCAN (every primary of a Redis
        Cluster in turn: redis-py's scan_iter). A key may come twice (SCAN's guarantee,
        https://redis.io/docs/latest/commands/scan/)."""
        batch: list[str] = []
        async for key in self._redis.scan_iter(match=self._patterns[kind], count=count):
            batch.append(str(key))
            if len(batch) >= count:
                yield batch
                batch = []
        if batch:
            yield batch

    async def read(self, kind: RecordKind, keys: Sequence[str]) -> list[SealedRecord]:
        """The records of `keys` in one round trip; those gone since the SCAN are left out."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                if kind is RecordKind.CONNECTION:
                    pipe.hmget(key, ["version", *CONNECTION_SECRETS])
                elif kind is RecordKind.PENDING:
                    pipe.get(key)
                else:
                    pipe.hget(key, "pending")
            replies = await pipe.execute()
        records = []
        for key, reply in zip(keys, replies, strict=True):
            if kind is RecordKind.CONNECTION:
                version, *secrets = reply
                values = {f: v for f, v in zip(CONNECTION_SECRETS, secrets, strict=True) if v}
                if version is None and not values:
                    continue  # gone since the SCAN
                # Without a version it is still counted (SealedRecord.unversioned): its
                # ciphertexts may need an old key, so `keys status` must not say 0.
                records.append(SealedRecord(kind, key, version or "", values))
            elif reply is not None:
                records.append(SealedRecord(kind, key, "", {"" if kind is RecordKind.PENDING
                                                            else "pending": reply}))  # fmt: skip
        return records

    async def replace(self, record: SealedRecord, changes: list[tuple[str, str, str]]) -> bool:
        """Write the re-sealed values when the record is as it was read (reseal.lua)."""
        written = await self._reseal(keys=[record.key], args=[record.version, json.dumps(changes)])
        return bool(written)

    async def count_connections(self) -> int:
        """How many connections are stored (the sets of ids per integration): the length
        of a progress bar."""
        total = 0
        async for key in self._redis.scan_iter(match=self._sets, count=1000):
            total += int(await self._redis.zcard(key))
        return total
