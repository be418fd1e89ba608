"""What the exchange service tests share: a service over the real Runtime, with the
integrations changed where a test needs it, and the consent dance without the worker."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.exchange_store import ExchangeStore
from tokenlife.adapters.outcome_counters import Counters
from tokenlife.adapters.pending_store import PendingStore
from tokenlife.runtime import Runtime
from tokenlife.services.callback import ExchangeAttempt
from tokenlife.services.exchange import ExchangeService
from tokenlife.services.scheduling import SchedulePolicy


def exchange_service(
    runtime: Runtime,
    changes: dict[str, dict[str, Any]] | None = None,
    save_retry_seconds: float = 20.0,
    counters: Counters | None = None,
) -> ExchangeService:
    """The runtime's exchange service; `changes` maps an integration name to the fields
    to replace in it (e.g. {"google": {"allow_account_change": True}})."""
    integrations = dict(runtime.config.integrations)
    for name, fields in (changes or {}).items():
        integrations[name] = dataclasses.replace(integrations[name], **fields)
    settings = runtime.config.settings
    cipher = Cipher(settings.encryption_keys)
    return ExchangeService(
        integrations=integrations,
        presets=runtime.config.presets,
        pending=PendingStore(runtime.redis, runtime.keys, cipher),
        tokens=runtime.tokens,
        exchanges=ExchangeStore(runtime.redis, runtime.keys, cipher),
        http=runtime.http,
        http_timeout=settings.http_timeout_seconds,
        schedule_policy=SchedulePolicy(expiry_lead_seconds=[]),
        save_retry_seconds=save_retry_seconds,
        counters=counters,
    )


async def consent(
    service: ExchangeService, integration: str, connection_id: str, now: float, **user: str
) -> dict[str, str]:
    """Start an authorization and let the fake provider consent; the callback's query.

    `user` adds what the fake understands: login_hint=NAME (who consents), deny="1".
    """
    request = await service.start_authorization(integration, connection_id, now)
    url = request.url + ("&" + urlencode(user) if user else "")
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as r:
        assert r.status == 302, f"provider answered {r.status}: {await r.text()}"
        location = r.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def attempt(attempt_id: str | None = None, number: int = 1, final: bool = False) -> ExchangeAttempt:
    return ExchangeAttempt(attempt_id or f"task-{uuid.uuid4()}", number, final)


def new_id() -> str:
    return "user-" + uuid.uuid4().hex[:12]
