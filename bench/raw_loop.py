"""The raw limit: a bare aiohttp + redis.asyncio loop doing the same POST-and-store.

No schedule, no lock, no compare-and-set, no events: the least work that refreshes a
stored, encrypted token set. What tokenlife's pipeline costs on top shows against this.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
from cryptography.fernet import Fernet, MultiFernet
from redis.asyncio import Redis


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
