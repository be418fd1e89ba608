"""The naive baseline: one Celery task per refresh, `requests` and a synchronous Redis.

What a first implementation usually looks like: no batching, no event loop, a blocking
HTTP call per task. It does the same work per token as the other two: read, decrypt,
POST, parse, encrypt, store.
"""

from __future__ import annotations

import os

import redis
import requests
from celery import Celery
from cryptography.fernet import MultiFernet

from bench.raw_loop import cipher_from_env

PREFIX = os.environ.get("BENCH_PREFIX", "bench-naive")
app = Celery("bench-naive", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_default_queue=PREFIX, worker_prefetch_multiplier=4, task_acks_late=False)

_client: redis.Redis | None = None
_session: requests.Session | None = None
_cipher: MultiFernet | None = None


@app.task(name="bench.naive_refresh", ignore_result=True)
def naive_refresh(key: str, token_url: str) -> None:
    global _client, _session, _cipher
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
        # The plain variant calls requests.post (a new connection per refresh), as most
        # first versions do; the session variant keeps connections alive.
        _session = requests.Session() if os.environ.get("BENCH_NAIVE_SESSION") else None
        _cipher = cipher_from_env()
    assert _cipher is not None
    stored = _client.hget(key, "refresh_token")
    assert isinstance(stored, str)
    refresh_token = _cipher.decrypt(stored.encode()).decode()
    post = _session.post if _session is not None else requests.post
    response = post(
        token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=("bench-client", "bench-secret"),
        timeout=10,
    )
    body = response.json()
    _client.hset(
        key,
        mapping={
            "access_token": _cipher.encrypt(body["access_token"].encode()).decode(),
            "refresh_token": _cipher.encrypt(body["refresh_token"].encode()).decode(),
            "expires_in": str(body["expires_in"]),
        },
    )
    _client.incr(f"{PREFIX}:done")
