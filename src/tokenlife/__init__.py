"""tokenlife: keep OAuth 2.0 integrations authorized, and say why when they won't stay so."""

from tokenlife import events
from tokenlife.errors import (
    ConfigurationError,
    InvalidStateError,
    ReauthorizationRequiredError,
    TokenlifeError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.events import ReceivedEvent
from tokenlife.library import Tokenlife, authorize_url, get_access_token

__all__ = [
    "ConfigurationError",
    "InvalidStateError",
    "ReauthorizationRequiredError",
    "ReceivedEvent",
    "Tokenlife",
    "TokenlifeError",
    "UnknownConnectionError",
    "UnknownIntegrationError",
    "UsageError",
    "authorize_url",
    "events",
    "get_access_token",
]
