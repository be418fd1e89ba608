"""The event streams: a capped Redis Stream per shard with fields `type` and `data` (JSON);
an event about a connection goes to its shard's stream, beside the events its writes publish."""

from __future__ import annotations

import json
import uuid
from typing import Any

from redis.asyncio import Redis

from tokenlife.adapters.event_consumer import qualified
from tokenlife.adapters.keys import Keys
from tokenlife.core.events import Event, make_event


class EventStream:
    def __init__(self, redis: Redis, keys: Keys, max_length: int) -> None:
        self._redis = redis
        self._keys = keys
        self._max_length = max_length

    async def publish(self, event: Event) -> str:
        # Approximate trimming (~) lets Redis drop whole macro-nodes: O(1) instead of O(N).
        shard = self._keys.event_shard(event.data)
        entry_id = await self._redis.xadd(
            self._keys.events(shard),
            {"type": event.type, "data": json.dumps(event.data, separators=(",", ":"))},
            maxlen=self._max_length,
            approximate=True,
        )
        stream_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return qualified(stream_id, shard)

    async def emit(
        self, type_: str, integration: str, connection_id: str | None, now: float, **fields: Any
    ) -> str:
        """Publish an event of `type_` with the common fields filled in."""
        return await self.publish(new_event(type_, integration, connection_id, now, **fields))


def new_event(
    type_: str, integration: str, connection_id: str | None, now: float, **fields: Any
) -> Event:
    """An event with a fresh id, for publishing now or inside a store write."""
    return make_event(
        type_,
        event_id=uuid.uuid4().hex,
        now=now,
        integration=integration,
        connection_id=connection_id,
        **fields,
    )
