"""A lifetime nobody states, asked of the server: RFC 7662 introspection after an exchange
or a refresh whose answer had no `expires_in` and whose access token is no JWT with `exp`.

Asked only where the integration has an `introspection_url` (the integrations file, the
catalogue, or discovery's `introspection_endpoint`). The answer's `exp` becomes the token
set's `expires_at` (lifetime_source "introspection"), so the next refresh is scheduled
ahead of the real expiry instead of hourly, and a token set without a refresh token is
judged long-lived or not instead of raising `alert.lifetime_unknown`.

It runs before the tokens are stored (like the account endpoint at the exchange), bounded
by the token endpoint's timeout; after a refresh, by what the token request left of it, so
the two fit the connection's lock together (services/refresh.py). Whatever goes wrong
(timeout, 5xx, an unusable answer, a token the server calls inactive) costs nothing but
the lifetime: the token set is stored as it came, with today's unknown-lifetime handling,
and a warning says why. Neither the token nor the answer's body is logged.
"""

from __future__ import annotations

import logging

import aiohttp

from tokenlife.adapters.introspection_endpoint import post_introspection_request
from tokenlife.core.integration import Integration
from tokenlife.core.introspection import introspection_request, with_introspected_lifetime
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import ProviderError, TransientError

log = logging.getLogger(__name__)

# Less time than this can't make a round trip worth starting.
MIN_TIMEOUT_SECONDS = 0.1


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
    if timeout < MIN_TIMEOUT_SECONDS:
        _fall_back(integration, "no time left for it within the refresh's lock")
        return tokens
    try:
        answer = await post_introspection_request(
            http, introspection_request(integration, tokens.access_token), timeout
        )
        learned = with_introspected_lifetime(tokens, answer, now)
    except (TransientError, ProviderError) as exc:
        _fall_back(integration, f"{type(exc).__name__}: {exc}")
        return tokens
    except Exception as exc:
        # The tokens are issued already: nothing here may cost them. Only the type is
        # logged, as an odd message could quote the request.
        _fall_back(integration, type(exc).__name__)
        return tokens
    if learned is None:
        _fall_back(integration, "its answer has no usable `exp`")
        return tokens
    log.info(
        "integration %s: the access token's lifetime is %d s, from the introspection "
        "endpoint", integration.name, learned.lifetime_seconds,
    )  # fmt: skip
    return learned


def _fall_back(integration: Integration, why: str) -> None:
    log.warning(
        "integration %s: the introspection endpoint did not tell the access token's "
        "lifetime (%s); the lifetime stays unknown (refreshed every hour; "
        "alert.lifetime_unknown without a refresh token)",
        integration.name, why,
    )  # fmt: skip
