"""The in-process interface for Python apps that share tokenlife's Redis and settings.

async with await Tokenlife.from_environment() as tl:
    url = await tl.authorize_url("google-drive", "user-42")
"""

from __future__ import annotations

import time
from types import TracebackType

from tokenlife.adapters.connection_record import Connection
from tokenlife.models import AccessToken
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings, load_settings


class Tokenlife:
    """Opened on the caller's event loop; close it (or use `async with`) when done."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @classmethod
    async def from_environment(cls, settings: Settings | None = None) -> Tokenlife:
        """Configured from `TOKENLIFE_*` (or `settings`). Without TOKENLIFE_ENCRYPTION_KEYS it
        uses the development key `make run` wrote, found from the working directory
        upwards (settings.require_encryption_keys), with a warning."""
        config = await load_config(settings or load_settings())
        return cls(await Runtime.open(config))

    async def authorize_url(
        self, integration: str, connection_id: str, *, now: float | None = None
    ) -> str:
        """The URL to send a user to; the state is stored for 10 minutes, single-use."""
        request = await self._runtime.exchange.start_authorization(
            integration, connection_id, time.time() if now is None else now
        )
        return request.url

    async def connection(self, integration: str, connection_id: str) -> Connection:
        """Stored metadata of a connection (status, expiry, scopes); never token values."""
        return await self._runtime.exchange.connection(integration, connection_id)

    async def get_access_token(self, integration: str, connection_id: str) -> AccessToken:
        """A valid access token, refreshed first when it expires within the leeway.

        Raises ReauthorizationRequiredError when the user has to connect again, and
        TransientError when the provider can't be reached right now (its subclass
        IntegrationUnavailableError while the integration's OIDC discovery has not
        succeeded; the instance retries discovery in the background while it is open).
        """
        return await self._runtime.access.get(integration, connection_id)

    async def aclose(self) -> None:
        await self._runtime.close()

    async def __aenter__(self) -> Tokenlife:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def authorize_url(integration: str, connection_id: str) -> str:
    """One-shot form of `Tokenlife.authorize_url`, configured from the environment."""
    async with await Tokenlife.from_environment() as tl:
        return await tl.authorize_url(integration, connection_id)


async def get_access_token(integration: str, connection_id: str) -> AccessToken:
    """One-shot form of `Tokenlife.get_access_token`, configured from the environment.

    Apps that ask often should keep a `Tokenlife` open instead: this one loads the
    configuration and opens connections on every call.
    """
    async with await Tokenlife.from_environment() as tl:
        return await tl.get_access_token(integration, connection_id)
