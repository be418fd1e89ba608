"""tokenlife: keep OAuth 2.0 integrations authorized, and say why when they won't stay so.

The errors are imported at once; everything else on first use (PEP 562), so
`import tokenlife.client` loads neither Redis nor Celery and works where only
`tokenlife[client]` is installed. The errors and the models need nothing but the standard
library; `Tokenlife`, `events`, `ReceivedEvent`, `authorize_url` and `get_access_token`
need the `server` extra, and say so when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tokenlife.errors import (
    ConfigurationError,
    InvalidStateError,
    ReauthorizationRequiredError,
    TokenlifeError,
    UnknownConnectionError,
    UnknownIntegrationError,
    UsageError,
)

if TYPE_CHECKING:
    from tokenlife import events
    from tokenlife.events import ReceivedEvent
    from tokenlife.library import Tokenlife, authorize_url, get_access_token
    from tokenlife.models import (
        AccessToken,
        Authorization,
        Connection,
        ConnectSession,
        Deletion,
        Event,
        EventPage,
        ExchangeResult,
        Integration,
        Readiness,
    )

__all__ = [
    "AccessToken",
    "Authorization",
    "ConfigurationError",
    "ConnectSession",
    "Connection",
    "Deletion",
    "Event",
    "EventPage",
    "ExchangeResult",
    "Integration",
    "InvalidStateError",
    "Readiness",
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

# Each name imported on first use, from the module that holds it (None: the module itself).
_LAZY: dict[str, tuple[str, str | None]] = {
    "events": ("tokenlife.events", None),
    "ReceivedEvent": ("tokenlife.events", "ReceivedEvent"),
    "Tokenlife": ("tokenlife.library", "Tokenlife"),
    "authorize_url": ("tokenlife.library", "authorize_url"),
    "get_access_token": ("tokenlife.library", "get_access_token"),
    **{
        name: ("tokenlife.models", name)
        for name in (
            "AccessToken", "Authorization", "ConnectSession", "Connection", "Deletion", "Event",
            "EventPage", "ExchangeResult", "Integration", "Readiness",
        )
    },
}  # fmt: skip


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tokenlife' has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if (missing.name or "tokenlife").partition(".")[0] == "tokenlife":
            raise
        raise ModuleNotFoundError(
            f"tokenlife.{name} needs the server extra, which is not installed (no module "
            f"named {missing.name!r}): pip install 'tokenlife[server]'",
            name=missing.name,
        ) from missing
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # once: later lookups don't come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
