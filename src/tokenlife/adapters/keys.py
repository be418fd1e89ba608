"""Every Redis key tokenlife uses, and why each TTL is what it is. Nothing else builds keys."""

from __future__ import annotations

from dataclasses import dataclass

# A user has this long to finish the consent screen before the state is forgotten.
PENDING_AUTHORIZATION_TTL_SECONDS = 600
# A claimed state stays bound to the claiming task while Celery retries the exchange;
# longer than the worst retry schedule (exchange_max_retries x exchange_retry_max_seconds).
EXCHANGE_CLAIM_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def pending(self, state: str) -> str:
        return f"{self.prefix}:pending:{state}"

    def exchanging(self, state: str) -> str:
        return f"{self.prefix}:exchanging:{state}"

    def connection(self, integration: str, connection_id: str) -> str:
        return f"{self.prefix}:conn:{integration}:{connection_id}"

    def connections(self, integration: str) -> str:
        """A set of the connection ids of one integration, for listing without SCAN."""
        return f"{self.prefix}:conns:{integration}"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def all_keys_pattern(self) -> str:
        return f"{self.prefix}:*"
