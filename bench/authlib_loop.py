"""The peer baseline: Authlib's AsyncOAuth2Client refreshing stored connections.

What a Python user would write instead of tokenlife: one shared `AsyncOAuth2Client`
(Authlib's httpx integration: on httpx2 when installed, as Authlib 1.9.8+ prefers, or on
httpx with BENCH_AUTHLIB_BACKEND=httpx, its deprecated fallback), `asyncio.gather` over
the due connections behind a semaphore, each one read from Redis, decrypted with the same
Fernet keys, refreshed with `client.refresh_token(token_url, refresh_token=...)`, and the
new token set saved back encrypted in one HSET: the token fields tokenlife keeps
(token_type, access and refresh token ciphertexts, expires_at, lifetime_seconds,
scopes_granted) and last_refreshed_at.

What it does not do, and tokenlife does: no schedule or claim, no lock against a second
refresher, no compare-and-set on save (a concurrent refresh can be overwritten), no event,
no per-provider limit, no error classification or backoff (a failure fails the gather).

The client is shared, and its `token` attribute is one slot: `refresh_token` returns
`self.token`, which another coroutine may overwrite while an `update_token` hook awaits.
So no hook is set, and each coroutine saves the value `refresh_token` returns (nothing
awaits between the response's parse and that return). The connection pool is left at its
defaults (100 connections, 20 kept alive), as a user would leave it: on httpx, a pool
keeping all 100 alive (what aiohttp gives the raw loop) measured slower, not faster
(httpcore scans its connections for every request it assigns).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from importlib.metadata import version

# Imported first: it adds an "always" filter for its warnings that the block below overrides.
import authlib.deprecate  # type: ignore[import-untyped]
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from bench.raw_loop import cipher_from_env

if os.environ.get("BENCH_AUTHLIB_BACKEND") == "httpx":
    sys.modules.setdefault("httpx2", None)  # type: ignore[arg-type]  # `import httpx2` fails

with warnings.catch_warnings():
    # Authlib 1.9.8+ prefers httpx2 (httpx's successor) and warns when it falls back to httpx.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )
    from authlib.integrations.httpx_client._compat import (  # type: ignore[import-untyped]
        httpx2 as _backend,
    )

# What this run measures, for the report: "authlib 1.9.10 on httpx2 2.16.2".
BACKEND = f"authlib {version('authlib')} on {_backend.__name__} {version(_backend.__name__)}"


async def refresh_all(redis_url: str, keys: list[str], token_url: str, concurrency: int) -> None:
    cipher = cipher_from_env()
    redis = Redis.from_url(redis_url, decode_responses=True)
    limit = asyncio.Semaphore(concurrency)
    async with AsyncOAuth2Client(
        client_id="bench-client",
        client_secret="bench-secret",
        token_endpoint_auth_method="client_secret_basic",
    ) as client:

        async def one(key: str) -> None:
            async with limit:
                stored = await redis.hget(key, "refresh_token")
                assert isinstance(stored, str)
                refresh_token = cipher.decrypt(stored.encode()).decode()
                token = await client.refresh_token(token_url, refresh_token=refresh_token)
                fields: dict[FieldT, EncodableT] = {
                    "token_type": str(token.get("token_type", "Bearer")),
                    "access_token": cipher.encrypt(token["access_token"].encode()).decode(),
                    "refresh_token": cipher.encrypt(token["refresh_token"].encode()).decode(),
                    "last_refreshed_at": repr(time.time()),
                }
                if token.get("expires_at") is not None:
                    fields["expires_at"] = repr(float(token["expires_at"]))
                if token.get("expires_in") is not None:
                    fields["lifetime_seconds"] = str(token["expires_in"])
                if token.get("scope"):
                    fields["scopes_granted"] = str(token["scope"])
                await redis.hset(key, mapping=fields)

        await asyncio.gather(*(one(key) for key in keys))
    await redis.aclose()
