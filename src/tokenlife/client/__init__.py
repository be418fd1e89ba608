"""Clients for tokenlife's HTTP API (docs/api.md), for apps that run apart from it:
`pip install 'tokenlife[client]'` brings httpx and nothing of the worker (docs/client.md).

    from tokenlife.client import Client

    with Client("https://tokens.internal", api_key) as tokenlife:
        token = tokenlife.access_token("google-drive", "user-42")

`AsyncClient` has the same methods, awaited. Both give the typed results of
`tokenlife.models`, as the in-process `Tokenlife` does, and raise the classes of
`tokenlife.errors`, decided by the API's `error` code:

    bad_request, too_large        UsageError
    unauthorized / forbidden      UnauthorizedError / ForbiddenError (UsageErrors)
    not_found                     UnknownIntegrationError or UnknownConnectionError (by the
                                  body's `resource`; CorruptRecordError for a broken record)
    reauthorization_required      ReauthorizationRequiredError (`reason`, `diagnosis`)
    no_refresh_token              NoRefreshTokenError (a UsageError; `expires_at`)
    undecryptable                 DecryptionError (check TOKENLIFE_ENCRYPTION_KEYS)
    unavailable                   StorageUnavailableError  \
    integration_unavailable       IntegrationUnavailableError  |  TransientErrors: retry,
    connection_busy               ConnectionBusyError          |  after `retry_after`
    provider_unavailable, timeout TransientError              /   seconds when given
    internal_error                TokenlifeError
    no answer, refused, reset     EndpointTimeoutError, TransportError (TransientErrors)
    events trimmed unread         EventsTrimmedError (follow_events, unless on_gap)

An answer without a code is read by its status: 429, 502, 503, 504 TransientError, another
4xx but 404 UsageError, anything else TokenlifeError. Every error from an answer carries
`api_status` and `api_error`. Neither the API key nor a token value appears in an error,
a message or a repr.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tokenlife.client.async_client import AsyncClient
from tokenlife.client.problems import error_for
from tokenlife.client.sync_client import Client
from tokenlife.models import (
    AccessToken,
    Connection,
    ConnectSession,
    Deletion,
    Event,
    EventPage,
    Integration,
    Readiness,
)

__all__ = [
    "AccessToken",
    "AsyncClient",
    "Client",
    "ConnectSession",
    "Connection",
    "Deletion",
    "Event",
    "EventPage",
    "Integration",
    "Readiness",
    "error_for",
]

if TYPE_CHECKING:
    from tokenlife.client.deprecated import TokenlifeClient as TokenlifeClient


def __getattr__(name: str) -> Any:
    if name == "TokenlifeClient":
        warnings.warn(
            "tokenlife.client.TokenlifeClient is AsyncClient now; import AsyncClient "
            "(docs/client.md, From TokenlifeClient)",
            DeprecationWarning,
            stacklevel=2,
        )
        from tokenlife.client.deprecated import TokenlifeClient

        return TokenlifeClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
