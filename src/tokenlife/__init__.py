"""tokenlife: keep OAuth 2.0 integrations authorized, and say why when they won't stay so."""

from tokenlife.errors import (
    ConfigurationError,
    InvalidStateError,
    ReauthorizationRequiredError,
    TokenlifeError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.library import Tokenlife, authorize_url, get_access_token

__all__ = [
    "ConfigurationError",
    "InvalidStateError",
    "ReauthorizationRequiredError",
    "Tokenlife",
    "TokenlifeError",
    "UnknownConnectionError",
    "UnknownIntegrationError",
    "UsageError",
    "authorize_url",
    "get_access_token",
]
