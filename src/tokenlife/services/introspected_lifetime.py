"""A lifetime nobody states, asked of the server: RFC 7662 introspection after an exchange
or a refresh whose answer had no `expires_in` and whose access token is no JWT with `exp`.

Asked only where the integration has an `introspection_url` (the integrations file's, else
discovery's `introspection_endpoint`, else the catalogue's). The answer's `exp` becomes the token
set's `expires_at` (lifetime_source "introspection"), so the next refresh is scheduled
ahead of the real expiry instead of hourly, and a token set without a refresh token is
judged long-lived or not instead of raising `alert.lifetime_unknown`.

At the exchange it runs before the tokens are stored (like the account endpoint: the
verdict, the outcome and its alert depend on it). After a refresh it runs once the new
token set is saved as it came and the connection's lock given back, and what it learns is
written by compare-and-set on the saved version (services/refresh.py): a slow endpoint
holds neither the lock nor a rotated refresh token in memory. Either way it is bounded by
the token endpoint's timeout. Whatever goes wrong (timeout, 5xx, an unusable answer, a
token the server calls inactive) costs nothing but the lifetime: the token set keeps
today's unknown-lifetime handling, and a warning says why. A failed endpoint is then left
alone for FAILURE_TTL_SECONDS in this process (one warning per period, not one per
exchange and refresh); a success ends that early. Neither the token nor the answer's body is logged.
"""

from __future__ import annotations

import logging

import aiohttp

from tokenlife.adapters.introspection_endpoint import post_introspection_request
from tokenlife.core.integration import Integration
from tokenlife.core.introspection import (
    FAILURE_TTL_SECONDS,
    FailureMemory,
    introspection_request,
    with_introspected_lifetime,
)
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import ProviderError, TransientError

log = logging.getLogger(__name__)

# Less time than this can't make a round trip worth starting.
MIN_TIMEOUT_SECONDS = 0.1
# Endpoints that failed lately, in this process (tests clear it).
RECENT_FAILURES = FailureMemory()


async def learn_lifetime(
    http: aiohttp.ClientSession,
    integration: Integration,
    tokens: TokenSet,
    timeout: float,
    now: float,
) -> TokenSet:
    """`tokens` with the lifetime the introspection endpoint states, or `tokens` unchanged
    when it states one already, the integration has no endpoint, or the answer is no use."""
    if tokens.lifetime_source is not None or integration.introspection_url is None:
        return tokens
    key = (integration.name, integration.introspection_url)
    if RECENT_FAILURES.holds(key, now):
        log.debug("integration %s: introspection failed lately; not asked", integration.name)
        return tokens
    if timeout < MIN_TIMEOUT_SECONDS:
        _fall_back(integration, "no time left for it within the refresh's lock")
        return tokens
    try:
        answer = await post_introspection_request(
            http, introspection_request(integration, tokens.access_token), timeout
        )
        learned = with_introspected_lifetime(tokens, answer, now)
    except (TransientError, ProviderError) as exc:
        _fall_back(integration, f"{type(exc).__name__}: {exc}", now)
        return tokens
    except Exception as exc:
        # The tokens are issued already: nothing here may cost them. Only the type is
        # logged, as an odd message could quote the request.
        _fall_back(integration, type(exc).__name__, now)
        return tokens
    if learned is None:
        _fall_back(integration, "its answer has no usable `exp`", now)
        return tokens
    RECENT_FAILURES.succeeded(key)
    log.info(
        "integration %s: the access token's lifetime is %d s, from the introspection "
        "endpoint", integration.name, learned.lifetime_seconds,
    )  # fmt: skip
    return learned


def _fall_back(integration: Integration, why: str, now: float | None = None) -> None:
    """Warn; with `now`, the endpoint itself failed: not asked again for a while."""
    pause = ""
    if now is not None and integration.introspection_url is not None:
        RECENT_FAILURES.failed((integration.name, integration.introspection_url), now)
        pause = f"; not asked again for {FAILURE_TTL_SECONDS:g} s"
    log.warning(
        "integration %s: the introspection endpoint did not tell the access token's "
        "lifetime (%s); the lifetime stays unknown (refreshed every hour; "
        "alert.lifetime_unknown without a refresh token)%s",
        integration.name, why, pause,
    )  # fmt: skip
