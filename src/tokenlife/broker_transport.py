"""kombu's Redis transport, with one crash on a broker restart turned into a retry.

Celery 5.7's consumer, on losing the broker connection, first closes the transport
(`Connection.collect`, which sets `transport.client` to None) and then the connection,
whose channel tries to restore the messages it had delivered but not acknowledged. With
a task in flight (every tokenlife task is `acks_late`) that restore builds a new Redis
pool from `transport.client`, meets None, and raises AttributeError, which neither
kombu nor Celery treat as a connection error: "Unrecoverable error", the worker exits
(reproduced by killing Redis while ticks flow; kombu/transport/redis.py `_connparams`).

Here the missing client is a redis ConnectionError instead, which kombu ignores while
closing: the consumer reconnects, and the unacknowledged messages stay in the broker's
unacked set, from which kombu restores them (`visibility_timeout`, `restore_visible`).
Selected with Celery's `broker_transport` (as `tokenlife-redis`) for redis:// broker URLs
(celery_config.py); rediss:// and other brokers keep kombu's own transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel


ALIAS = "tokenlife-redis"
TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
