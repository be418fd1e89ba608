"""Notifications no target accepted after every retry: the stream {prefix}:alerts:dead
(fields `target`, `error`, `payload`), listed and replayed by `tokenlife alerts
dead-letters` (docs/cli.md#alerts)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from redis.asyncio import Redis

from tokenlife.adapters.keys import DEAD_LETTER_CLAIM_TTL_SECONDS, Keys
from tokenlife.errors import DeliveryError
from tokenlife.services import incidents

MAX_DEAD_LETTERS = 100_000  # the stream is trimmed to about this many, oldest first


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    target: str
    error: str
    payload: dict[str, Any]

    @property
    def dead_lettered_at(self) -> float:
        """From the stream entry's id: milliseconds since the epoch, then a sequence."""
        return int(self.id.split("-", 1)[0]) / 1000

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "target": self.target, "error": self.error,
                "dead_lettered_at": self.dead_lettered_at, "payload": self.payload}  # fmt: skip


class Replayed(Enum):
    DELIVERED = "delivered"  # the target accepted it; the dead letter is gone
    FAILED = "failed"  # it failed again: dead-lettered anew (new id), the old one gone
    NO_TARGET = "no_target"  # its target is no longer configured: left as it was
    RESOLVED = "skipped_resolved"  # an alert whose RESOLVED the target got since: left, unsent
    ELSEWHERE = "skipped_elsewhere"  # another replay holds it, or removed it already


@dataclass(frozen=True, slots=True)
class ReplayResult:
    letter: DeadLetter
    outcome: Replayed
    error: str | None = None
    new_id: str | None = None


async def add(redis: Redis, keys: Keys, target: str, payload: dict[str, Any], error: str) -> str:
    entry = {"target": target, "error": error, "payload": json.dumps(payload)}
    return str(await redis.xadd(keys.alerts_dead, entry, maxlen=MAX_DEAD_LETTERS,  # type: ignore[arg-type]
                                approximate=True))  # fmt: skip


async def newest(redis: Redis, keys: Keys, limit: int) -> list[DeadLetter]:
    entries = await redis.xrevrange(keys.alerts_dead, count=limit)
    return [_letter(entry_id, fields) for entry_id, fields in _typed(entries)]


async def everything(redis: Redis, keys: Keys) -> list[DeadLetter]:
    """Oldest first, as they were dead-lettered."""
    return [_letter(i, f) for i, f in _typed(await redis.xrange(keys.alerts_dead))]


async def by_ids(
    redis: Redis, keys: Keys, ids: Sequence[str]
) -> tuple[list[DeadLetter], list[str]]:
    """(the dead letters found, the ids not found)."""
    found: list[DeadLetter] = []
    missing: list[str] = []
    for entry_id in ids:
        entries = _typed(await redis.xrange(keys.alerts_dead, entry_id, entry_id))
        if entries:
            found.append(_letter(*entries[0]))
        else:
            missing.append(entry_id)
    return found, missing


async def replay(
    redis: Redis,
    keys: Keys,
    letters: Sequence[DeadLetter],
    resend: Callable[[str, dict[str, Any], float], Awaitable[str | None]],
    now: float,
    *,
    force: bool = False,
) -> list[ReplayResult]:
    """Send each again with `resend` (AlertDelivery.resend: the run's retries). The dead
    letter goes only once the target accepted; one that fails again is written anew with
    the new error before the old one is removed, so a crash in between keeps both rather
    than neither. An alert whose incident the target saw resolved since is not sent (unless
    `force`): it would page for what is over. Each is claimed first (SET NX, expiring), and
    sent only if it is still there: two concurrent replays send it once."""
    results = []
    for letter in letters:
        if not force and await _resolved_since(redis, keys, letter):
            results.append(ReplayResult(letter, Replayed.RESOLVED))
            continue
        claim = keys.dead_letter_claim(letter.id)
        # The claim is left to expire: a replay that read the letter before it was removed
        # finds it gone (the XRANGE below) or claimed, never free to send again.
        if not await redis.set(claim, "1", nx=True, ex=DEAD_LETTER_CLAIM_TTL_SECONDS) or not (
            await redis.xrange(keys.alerts_dead, letter.id, letter.id)
        ):
            results.append(ReplayResult(letter, Replayed.ELSEWHERE))
            continue
        try:
            error = await resend(letter.target, letter.payload, now)
        except DeliveryError as exc:
            await redis.delete(claim)  # left as it was, for a replay once it is configured
            results.append(ReplayResult(letter, Replayed.NO_TARGET, str(exc)))
            continue
        new_id = None
        if error is not None:
            new_id = await add(redis, keys, letter.target, letter.payload, error)
        await redis.xdel(keys.alerts_dead, letter.id)
        outcome = Replayed.DELIVERED if error is None else Replayed.FAILED
        results.append(ReplayResult(letter, outcome, error, new_id))
    return results


async def _resolved_since(redis: Redis, keys: Keys, letter: DeadLetter) -> bool:
    incident = letter.payload.get("incident_key")
    if letter.payload.get("kind") != "alert" or not isinstance(incident, str) or not incident:
        return False
    return await incidents.is_resolved(redis, keys, letter.target, incident)


def _letter(entry_id: str, fields: dict[str, str]) -> DeadLetter:
    try:
        payload = json.loads(fields.get("payload", "{}"))
    except ValueError:
        payload = {}
    return DeadLetter(entry_id, fields.get("target", ""), fields.get("error", ""),
                      payload if isinstance(payload, dict) else {})  # fmt: skip


def _typed(reply: Any) -> list[tuple[str, dict[str, str]]]:
    return cast(list[tuple[str, dict[str, str]]], reply or [])
