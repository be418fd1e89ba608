"""How long and how often a write that ends a refresh is retried while Redis is away
(the loop itself is adapters/storage_errors.retry_while_unavailable, shared with the
exchange's save), and the writer that applies it to TokenStore.write."""

from __future__ import annotations

import random
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.connection_write import Change, Written
from tokenlife.adapters.storage_errors import SAVE_RETRY_GAP_SECONDS, retry_while_unavailable
from tokenlife.adapters.token_store import TokenStore

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True, slots=True)
class WriteRetry:
    """How long to keep trying a write, and how far apart."""

    seconds: float = 600.0
    base_seconds: float = 0.1
    max_delay_seconds: float = SAVE_RETRY_GAP_SECONDS


class DurableWriter:
    """TokenStore.write, retried through a Redis outage."""

    def __init__(self, store: TokenStore, retry: WriteRetry, rng: random.Random) -> None:
        self.store = store
        self.retry = retry
        self._rng = rng

    async def write(
        self,
        connection: Connection,
        what: str,
        *,
        now: float,
        retry: WriteRetry | None = None,
        **change: Unpack[Change],
    ) -> Written:
        """One operation id for every try, so an attempt that landed but whose reply was
        lost counts as written."""
        operation = secrets.token_hex(8)
        policy = retry or self.retry
        # Read once: every try writes the same deletions, even from a generator.
        change["delete_fields"] = tuple(change.get("delete_fields", ()))

        def attempt() -> Awaitable[Written]:
            return self.store.write(connection, now=now, operation=operation, **change)

        return await retry_while_unavailable(
            attempt,
            policy.seconds,
            what=f"{what} of {connection.integration}/{connection.connection_id}",
            base_seconds=policy.base_seconds,
            max_delay_seconds=policy.max_delay_seconds,
            rng=self._rng,
        )
