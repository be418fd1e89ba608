"""Discovery documents are reused while their issuer's caching headers say they are fresh:
in this process, and through Redis in every other; a stale or uncacheable one is fetched
at the next start, and a document that can't be fetched still starts from the cache."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from redis.asyncio import Redis

from tests.fakes.issuer import Issuer
from tests.support import Fakes
from tokenlife import integration_discovery
from tokenlife.adapters.discovery import (
    CLOCK_SKEW_SECONDS,
    MAX_FRESH_SECONDS,
    DiscoveryCache,
    freshness_seconds,
)
from tokenlife.adapters.keys import Keys
from tokenlife.runtime import load_config
from tokenlife.settings import Settings

HOUR = 3600.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, 0.0),  # nothing said: asked at every start, as before
        ({"Cache-Control": "max-age=3600"}, HOUR),
        ({"Cache-Control": "public, max-age=3600"}, HOUR),  # Google's
        ({"Cache-Control": "max-age=86400, private"}, 86400.0),  # Microsoft's
        ({"Cache-Control": 'max-age="600"'}, 600.0),
        ({"Cache-Control": "MAX-AGE=600"}, 600.0),
        ({"Cache-Control": "no-cache"}, 0.0),
        ({"Cache-Control": "no-store, max-age=60"}, 0.0),
        ({"Cache-Control": "max-age=soon"}, 0.0),  # invalid: stale (RFC 9111 §4.2.1)
        ({"Cache-Control": "max-age=-5"}, 0.0),
        ({"Cache-Control": "max-age=31536000"}, MAX_FRESH_SECONDS),  # a year: a day
        ({"Cache-Control": "max-age=3600", "Age": "600"}, 3000.0),
        # One list over several header lines (RFC 9110 §5.3), names in any case.
        ([("Cache-Control", "public"), ("cache-control", "max-age=600")], 600.0),
        ([("Cache-Control", "max-age=600"), ("Cache-Control", "no-store")], 0.0),
        ({"Cache-Control": "max-age=60", "Age": "600"}, 0.0),
        (
            {"Date": "Mon, 30 Nov 2026 12:00:00 GMT", "Expires": "Mon, 30 Nov 2026 13:00:00 GMT"},
            HOUR,
        ),
        (
            {
                "Cache-Control": "max-age=60",
                "Date": "Mon, 30 Nov 2026 12:00:00 GMT",
                "Expires": "Mon, 30 Nov 2026 13:00:00 GMT",
            },
            60.0,
        ),  # max-age wins over Expires (RFC 9111 §5.3)
        ({"Date": "Mon, 30 Nov 2026 12:00:00 GMT", "Expires": "0"}, 0.0),
        ({"Expires": "Mon, 30 Nov 2026 13:00:00 GMT"}, 0.0),  # no Date to count from
        (
            {
                "Date": "Mon, 30 Nov 2026 12:00:00 GMT",
                "Last-Modified": "Sun, 29 Nov 2026 12:00:00 GMT",
            },
            8640.0,
        ),  # a tenth of a day
        (
            {
                "Date": "Mon, 30 Nov 2026 12:00:00 GMT",
                "Last-Modified": "Mon, 30 Nov 2025 12:00:00 GMT",
            },
            MAX_FRESH_SECONDS,
        ),
    ],
)
def test_freshness_is_read_as_a_private_http_cache_reads_it(
    headers: dict[str, str] | list[tuple[str, str]], seconds: float
) -> None:
    assert freshness_seconds(CIMultiDict(headers)) == seconds


@dataclass
class CachingIssuer(Issuer):
    """The tests' issuer, saying how long its document may be reused."""

    cache_control: str = "max-age=600"

    async def discovery(self, request: web.Request) -> web.Response:
        response = await super().discovery(request)
        response.headers["Cache-Control"] = self.cache_control
        return response


@asynccontextmanager
async def serve_caching_issuer(cache_control: str) -> AsyncIterator[CachingIssuer]:
    state = CachingIssuer(up=True, cache_control=cache_control)
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", state.discovery)
    async with TestServer(app, host="127.0.0.1") as server:
        state.url = f"http://127.0.0.1:{server.port}"
        try:
            yield state
        finally:
            forget_in_process(state)


def forget_in_process(issuer: Issuer) -> None:
    """What another process starts with: nothing of this one's memory."""
    integration_discovery._fresh_in_process.pop(issuer.url, None)


def issuer_settings(settings: Settings, fakes: Fakes, issuer: Issuer, tmp_path: Path) -> Settings:
    path = issuer.integrations_file(
        tmp_path / "integrations.toml", fakes.generic.base_url, fakes.callback
    )
    # A key prefix of its own: the document cached in Redis belongs to this test alone.
    prefix = f"{settings.key_prefix}-c{uuid.uuid4().hex[:6]}"
    return settings.model_copy(update={"integrations_file": path, "key_prefix": prefix})


async def test_a_fresh_document_is_fetched_once_for_this_process_and_every_other(
    settings: Settings, fakes: Fakes, tmp_path: Path, redis: Redis
) -> None:
    async with serve_caching_issuer("public, max-age=600") as issuer:
        configured = issuer_settings(settings, fakes, issuer, tmp_path)
        for _ in range(3):
            config = await load_config(configured)
            assert config.integrations["oidc"].token_url == f"{issuer.url}/token"
        assert issuer.asked == 1

        forget_in_process(issuer)  # another process: Redis has it
        issuer.up = False  # and would not need the issuer even if it were up
        config = await load_config(configured)
        assert config.integrations["oidc"].token_url == f"{issuer.url}/token"
        assert not config.integrations.stale  # fresh, not a fallback
        assert issuer.asked == 1

        keys = Keys(configured.key_prefix, configured.redis_shards)
        stored = await redis.hgetall(keys.discovery(issuer.url))
        assert 590 < float(stored["fresh_until"]) - float(stored["fetched_at"]) <= 600


async def test_a_stale_document_is_fetched_again(
    settings: Settings, fakes: Fakes, tmp_path: Path, redis: Redis
) -> None:
    async with serve_caching_issuer("max-age=600") as issuer:
        configured = issuer_settings(settings, fakes, issuer, tmp_path)
        await load_config(configured)
        # Ten minutes on, in Redis and here: the issuer's word has run out.
        keys = Keys(configured.key_prefix, configured.redis_shards)
        await redis.hset(keys.discovery(issuer.url), "fresh_until", "0")
        forget_in_process(issuer)
        issuer.revocation_path = "/oauth/revoke"  # moved meanwhile

        config = await load_config(configured)

        assert issuer.asked == 2
        assert config.integrations["oidc"].revocation_url == f"{issuer.url}/oauth/revoke"


async def test_a_document_its_issuer_says_not_to_cache_is_fetched_at_every_start(
    settings: Settings, fakes: Fakes, tmp_path: Path
) -> None:
    async with serve_caching_issuer("no-cache") as issuer:
        configured = issuer_settings(settings, fakes, issuer, tmp_path)
        for _ in range(3):
            await load_config(configured)
        assert issuer.asked == 3

        issuer.up = False  # still kept as the last good one, for an outage
        config = await load_config(configured)
        assert config.integrations["oidc"].token_url == f"{issuer.url}/token"
        assert set(config.integrations.stale) == {"oidc"}


NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.mark.parametrize(
    ("fetched_at", "fresh_until", "fresh"),
    [
        (NOW - 10, NOW + 600, True),
        (NOW - MAX_FRESH_SECONDS + 10, NOW + 365 * DAY, True),  # a day from its fetch
        (NOW - 2 * DAY, NOW + 365 * DAY, False),  # a year's word: capped at a day
        (NOW - 2 * DAY, float("inf"), False),
        (NOW + CLOCK_SKEW_SECONDS - 1, NOW + 600, True),  # a clock a little ahead
        (NOW + HOUR, NOW + HOUR + 600, False),  # fetched in this clock's future
        (NOW + 10 * 365 * DAY, NOW + 10 * 365 * DAY + 600, False),
    ],
)
async def test_a_copy_in_redis_is_fresh_at_most_a_day_from_a_fetch_not_in_the_future(
    settings: Settings, redis: Redis, fetched_at: float, fresh_until: float, fresh: bool
) -> None:
    issuer = f"https://issuer-{uuid.uuid4().hex[:6]}.example"
    cache = DiscoveryCache(redis, Keys(settings.key_prefix, settings.redis_shards))
    await cache.put(issuer, {"issuer": issuer}, fetched_at, fresh_until)

    cached = await cache.get(issuer)

    assert cached is not None
    assert cached.fresh(NOW) is fresh
    assert cached.fresh_until <= cached.fetched_at + MAX_FRESH_SECONDS


@pytest.mark.parametrize(
    ("fetched_ago", "fresh_for"),
    [
        (-10 * 365 * DAY, 600.0),  # written by a clock ten years ahead
        (2 * DAY, 365 * DAY),  # fetched two days ago, "fresh" for a year
    ],
)
async def test_a_copy_in_redis_cannot_pin_the_token_endpoint_past_its_bounds(
    settings: Settings,
    fakes: Fakes,
    tmp_path: Path,
    redis: Redis,
    fetched_ago: float,
    fresh_for: float,
) -> None:
    async with serve_caching_issuer("max-age=600") as issuer:
        configured = issuer_settings(settings, fakes, issuer, tmp_path)
        keys = Keys(configured.key_prefix, configured.redis_shards)
        # Someone who can write Redis, not decrypt tokens, names their own token endpoint.
        pinned = {"issuer": issuer.url, "authorization_endpoint": f"{issuer.url}/authorize",
                  "token_endpoint": "https://elsewhere.example/token"}  # fmt: skip
        fetched_at = time.time() - fetched_ago
        await DiscoveryCache(redis, keys).put(
            issuer.url, pinned, fetched_at, fetched_at + fresh_for
        )

        config = await load_config(configured)

        assert issuer.asked == 1
        assert config.integrations["oidc"].token_url == f"{issuer.url}/token"
        stored = await redis.hgetall(keys.discovery(issuer.url))
        assert json.loads(stored["document"])["token_endpoint"] == f"{issuer.url}/token"
