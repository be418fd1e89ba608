"""Who the account is when the token response can't say: the provider's account endpoint.

An exchange binds a connection to an account (adapters/save_connection.lua compares the
stored subject with the new one). An ID token's `sub` says who it is; a provider without
one (GitHub, Dropbox without `openid`, Box, Zoom) is asked with the new access token at
the endpoint the catalogue documents (core/account.py).

A failed lookup (timeout, 5xx, 429, an unexpected status or body) makes the account
*unknown*, never an error that drops the tokens: a first connect is stored without a
subject, and a reconnect over a connection bound to an account ends in `subject_unknown`
with the stored connection unchanged (the safe side: an account nobody confirmed never
replaces one that was). It is logged as a warning without the token or the body.
"""

from __future__ import annotations

import logging

import aiohttp

from tokenlife.adapters.account_endpoint import fetch_account_id
from tokenlife.core.integration import Integration
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import ProviderError, TransientError

log = logging.getLogger(__name__)


async def account_from_endpoint(
    http: aiohttp.ClientSession, integration: Integration, tokens: TokenSet, timeout: float
) -> str | None:
    """The account id the integration's account endpoint gives for the new tokens; None
    when the preset knows no such endpoint or the lookup failed (see the module doc)."""
    endpoint = integration.account_endpoint
    if endpoint is None:
        return None
    try:
        return await fetch_account_id(http, endpoint, tokens.access_token, timeout)
    except (TransientError, ProviderError) as exc:
        log.warning(
            "integration %s: could not tell whose the new tokens are from the account "
            "endpoint (%s: %s); the account is treated as unknown",
            integration.name, type(exc).__name__, exc,
        )  # fmt: skip
        return None
    except Exception as exc:
        # The code is already redeemed: nothing here may cost the tokens. aiohttp refuses
        # a header with control characters (an odd access token) with a bare ValueError;
        # only the type is logged, as the message could quote the header.
        log.warning(
            "integration %s: the account endpoint could not be asked (%s); the account "
            "is treated as unknown", integration.name, type(exc).__name__,
        )  # fmt: skip
        return None
