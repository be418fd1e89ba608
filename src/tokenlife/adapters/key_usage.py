"""Which configured key decrypts the stored connections: a bounded sample for
`tokenlife doctor`. Reads only; token values are decrypted in memory and dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenlife.adapters.keys import Keys
from tokenlife.core.doctor_fleet import KeySample

KeyUse = Literal["current", "older", "none"]


async def sample_key_usage(
    client: Redis, keys: Keys, encryption_keys: tuple[str, ...], limit: int, seconds: float
) -> KeySample:
    """Up to `limit` stored connections, found by SCAN (not KEYS, which blocks Redis), each
    read and decrypted; whatever was read within `seconds` is the sample."""
    classify = _classifier(encryption_keys)
    counts: dict[KeyUse, int] = {"current": 0, "older": 0, "none": 0}
    examples: list[str] = []
    examined, cursor, error, skipped = 0, 0, None, False
    # The prefix allows no glob character, so this matches connection hashes only.
    pattern = keys.connection("*", "*")
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while True:
            cursor, found = await client.scan(cursor, match=pattern, count=1000)
            names = found[: limit - examined]
            skipped = skipped or len(names) < len(found)
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(name, "integration", "connection_id", "access_token",
                               "refresh_token")  # fmt: skip
                rows = await pipe.execute()
            for integration, connection_id, access, refresh in rows:
                if not access:  # a half-written record, not a connection
                    continue
                examined += 1
                kind = classify([s for s in (access, refresh) if s])
                counts[kind] += 1
                if kind == "none" and len(examples) < 5:
                    examples.append(f"{integration}/{connection_id}")
            if cursor == 0 or examined >= limit:
                break
            if asyncio.get_running_loop().time() > deadline:
                error = f"the {seconds:g} s bound"
                break
    except (RedisError, OSError) as exc:
        error = str(exc) or type(exc).__name__
    return KeySample(
        examined=examined, current=counts["current"], older=counts["older"],
        undecryptable=counts["none"], examples=tuple(examples),
        complete=cursor == 0 and not skipped and error is None, error=error,
    )  # fmt: skip


def _classifier(encryption_keys: tuple[str, ...]) -> Callable[[list[str]], KeyUse]:
    """A record's secrets are "current" when the first key decrypts them all, "older"
    when one needs a later key, "none" when one decrypts with no configured key."""
    if not encryption_keys:
        return lambda _: "none"
    first = Fernet(encryption_keys[0])
    every = MultiFernet([Fernet(k) for k in encryption_keys])

    def classify(secrets: list[str]) -> KeyUse:
        kind: KeyUse = "current"
        for secret in secrets:
            token = secret.encode("ascii", "replace")
            try:
                first.decrypt(token)
                continue
            except InvalidToken:
                pass
            try:
                every.decrypt(token)
            except InvalidToken:
                return "none"
            kind = "older"
        return kind

    return classify
