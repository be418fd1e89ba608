"""tokenlife: keep OAuth 2.0 integrations authorized, and say why when they won't stay so."""

from tokenlife.errors import (
    ConfigurationError,
    InvalidStateError,
    TokenlifeError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)
from tokenlife.library import Tokenlife, authorize_url

__all__ = [
    "ConfigurationError",
    "InvalidStateError",
    "Tokenlife",
    "TokenlifeError",
    "UnknownConnectionError",
    "UnknownIntegrationError",
    "UsageError",
    "authorize_url",
]
