"""The raw limit: a bare aiohttp + redis.asyncio loop doing the same POST-and-store.

No schedule, no lock, no compare-and-set, no events: the least work that refreshes a
stored, encrypted token set. What tokenlife's pipeline costs on top shows against this.

bench/refresh_throughput.py runs it in its own process (`raw`) and, to compare like with
like, in as many processes as the pipeline has workers (`raw_equal_procs`): each one runs
`python -m bench.raw_loop REDIS_URL TOKEN_URL PREFIX START STOP CONCURRENCY` on its share
of the connections, prints "ready" once set up, starts when a line arrives on its standard
input, and prints one JSON line: its start and end (time.time()) and its CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aiohttp
from cryptography.fernet import Fernet, MultiFernet
from redis.asyncio import Redis

from tokenlife.adapters.keys import Keys


def cipher_from_env() -> MultiFernet:
    return MultiFernet([Fernet(k) for k in os.environ["TOKENLIFE_ENCRYPTION_KEYS"].split(",")])


async def refresh_all(redis_url: str, keys: list[str], token_url: str, concurrency: int) -> None:
    cipher = cipher_from_env()
    redis = Redis.from_url(redis_url, decode_responses=True)
    limit = asyncio.Semaphore(concurrency)
    auth = aiohttp.BasicAuth("bench-client", "bench-secret")
    async with aiohttp.ClientSession() as session:

        async def one(key: str) -> None:
            async with limit:
                stored = await redis.hget(key, "refresh_token")
                assert isinstance(stored, str)
                refresh_token = cipher.decrypt(stored.encode()).decode()
                form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
                async with session.post(token_url, data=form, auth=auth) as response:
                    body = await response.json()
                await redis.hset(
                    key,
                    mapping={
                        "access_token": cipher.encrypt(body["access_token"].encode()).decode(),
                        "refresh_token": cipher.encrypt(body["refresh_token"].encode()).decode(),
                        "expires_in": str(body["expires_in"]),
                    },
                )

        await asyncio.gather(*(one(key) for key in keys))
    await redis.aclose()


def main() -> None:
    redis_url, token_url, prefix, start, stop, concurrency = sys.argv[1:7]
    layout = Keys(prefix)  # the default shard count, as the bench's settings have
    keys = [layout.connection("bench", f"c{i}") for i in range(int(start), int(stop))]
    from tokenlife.worker import new_event_loop  # the worker's loop: uvloop when installed

    loop = new_event_loop()
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.time(), time.process_time()
    try:
        loop.run_until_complete(refresh_all(redis_url, keys, token_url, int(concurrency)))
    finally:
        loop.close()
    finished = time.time()
    print(json.dumps({"started": started, "finished": finished, "cpu": time.process_time() - cpu}))


if __name__ == "__main__":
    main()
