"""Client secrets that expire, per integration: warn 30, 7 and 1 days ahead (beat's
`tokenlife.check_client_secrets`), raise one alert.client_secret_expired when the provider
refuses an expired secret, and say so when it takes a secret again.

An expired secret fails every refresh of the integration the same way. Re-authorizing the
users would not help (the secret, not the grant, is refused), so the connections keep their
refresh token and retry hours apart (services/refresh_failure.py); the first refusal claims
a Redis mark (SET NX) and alerts once for the whole integration; while it is held, beat lets
one connection per integration probe every 10 minutes (`probe`); the first success after it
(a refresh or a code exchange) deletes the mark, emits client_secret.accepted, which
resolves the alert (core/notifications.py CLEARS), and makes the held-back connections due.
A warning sent ahead resolves the same way when the configured date moves beyond 30 days.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis.asyncio import Redis

from tokenlife.adapters import scripts
from tokenlife.adapters.connection_scan import ConnectionScan
from tokenlife.adapters.event_stream import EventStream
from tokenlife.adapters.keys import (
    CLIENT_SECRET_EXPIRED_TTL_SECONDS,
    SECRET_EXPIRING_SENT_EXTRA_SECONDS,
    Keys,
)
from tokenlife.core import events, secret_expiry
from tokenlife.core.integration import Integration
from tokenlife.core.secret_expiry import (
    SECONDS_PER_DAY,
    SECRET_PROBE_INTERVAL_SECONDS,
    preflight_state,
    rotation_steps,
)

log = logging.getLogger(__name__)


class ClientSecretWatch:
    def __init__(self, redis: Redis, keys: Keys, events_: EventStream) -> None:
        self._redis = redis
        self._keys = keys
        self._events = events_
        self._bring_forward_script = scripts.register(redis, "bring_forward")

    async def refused(
        self, integration: Integration, error: str, description: str | None, now: float
    ) -> bool:
        """A refresh was refused for an expired client secret: the first refusal for the
        integration raises alert.client_secret_expired; True when this one did."""
        key = self._keys.client_secret_expired(integration.name)
        if not await self._redis.set(key, repr(now), nx=True, ex=CLIENT_SECRET_EXPIRED_TTL_SECONDS):
            return False
        try:
            await self._emit_expired(integration, error, description, now)
        except BaseException:
            # No alert went out: let the next refusal try again.
            await self._redis.delete(key)
            raise
        log.error("integration %s: the provider refuses the client secret as expired; "
                  "connections keep retrying until it is replaced", integration.name)  # fmt: skip
        return True

    async def _emit_expired(
        self, integration: Integration, error: str, description: str | None, now: float
    ) -> None:
        steps, source = rotation_steps(integration)
        connections = await ConnectionScan(self._redis, self._keys).count(integration.name)
        expires_at = integration.client_secret_expires_at
        await self._events.emit(
            events.CLIENT_SECRET_EXPIRED, integration.name, None, now,
            provider=integration.provider,
            message="The provider refuses the integration's client secret: it has expired. "
            "Every refresh and every new connection of this integration fails until the "
            "secret is replaced; the connections keep retrying and recover by themselves "
            "(re-authorizing the users would not help).",
            error=error, error_description=description,
            client_secret_expires_at=events.iso8601(expires_at),
            connections=int(connections), fix=steps, fix_source=source,
        )  # fmt: skip

    async def accepted(self, integration: Integration, now: float) -> bool:
        """The provider took the client secret again (a refresh or an exchange succeeded):
        end an expired-secret alert if one is raised; True when there was one."""
        held = await self._redis.getdel(self._keys.client_secret_expired(integration.name))
        if held is None:
            return False
        raw = held.decode() if isinstance(held, bytes) else str(held)
        try:
            since: float | None = float(raw)
        except ValueError:
            since = None
        await self._events.emit(
            events.CLIENT_SECRET_ACCEPTED, integration.name, None, now,
            provider=integration.provider, expired_since=events.iso8601(since),
            renewed_until=events.iso8601(integration.client_secret_expires_at),
        )  # fmt: skip
        log.info("integration %s: the provider accepts the client secret again", integration.name)
        await self._bring_forward(integration.name, now)
        return True

    async def probe(self, integrations: Iterable[Integration], now: float) -> list[str]:
        """While an integration's secret is refused as expired, bring ONE of its waiting
        connections forward every SECRET_PROBE_INTERVAL_SECONDS: it finds the new secret
        without every connection asking; returns the integrations probed."""
        probed = []
        for integration in integrations:
            name = integration.name
            if not await self._redis.exists(self._keys.client_secret_expired(name)):
                continue
            waiting = await self._waiting(name, now)
            if not waiting:
                continue
            key = self._keys.client_secret_probe(name)
            if not await self._redis.set(key, repr(now), nx=True, ex=SECRET_PROBE_INTERVAL_SECONDS):
                continue
            await self._schedule_now(name, waiting[:1], now)
            probed.append(name)
        return probed

    async def _bring_forward(self, integration: str, now: float) -> None:
        """The secret works again: the integration's connections held back for it retry
        now, not hours later."""
        await self._schedule_now(integration, await self._waiting(integration, now), now)

    async def _waiting(self, integration: str, now: float) -> list[str]:
        """The connections held back past now by an expired-secret refusal (their
        retry_not_before, held by client_secret; a record written before that mark, by
        retry_not_before alone): not one a provider's Retry-After holds, which the new
        secret does not end."""
        ids = [cid for shard_ids in
               (await ConnectionScan(self._redis, self._keys).ids(integration)).values()
               for cid in shard_ids]  # fmt: skip
        ids.sort()
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                key = self._keys.connection(integration, cid)
                pipe.hmget(key, "retry_not_before", "retry_held_by")
            held = await pipe.execute()
        return [
            cid for cid, (at, by) in zip(ids, held, strict=True)
            if at and float(at) > now and by in (None, "client_secret")
        ]  # fmt: skip

    async def _schedule_now(self, integration: str, ids: list[str], now: float) -> None:
        """Each shard's connections in one script (its schedule and their hashes)."""
        by_shard: dict[int, list[str]] = {}
        for cid in ids:
            by_shard.setdefault(self._keys.shard(integration, cid), []).append(cid)
        for shard, shard_ids in by_shard.items():
            keys = [self._keys.schedule(shard),
                    *(self._keys.connection(integration, c) for c in shard_ids)]  # fmt: skip
            args = [repr(now), *(self._keys.member(integration, c) for c in shard_ids)]
            await self._bring_forward_script(keys=keys, args=args)

    async def tell_refused(
        self, integration: Integration, error: str, description: str | None, now: float
    ) -> None:
        """refused(), best effort: for a refresh or an exchange whose own outcome is
        recorded either way (the next refusal tries the alert again)."""
        try:
            await self.refused(integration, error, description, now)
        except Exception:
            log.warning("could not raise alert.client_secret_expired for %s", integration.name,
                        exc_info=True)  # fmt: skip

    async def tell_accepted(self, integration: Integration, now: float) -> None:
        """accepted(), best effort: the next success tries again."""
        try:
            await self.accepted(integration, now)
        except Exception:
            log.warning("could not resolve alert.client_secret_expired for %s",
                        integration.name, exc_info=True)  # fmt: skip

    async def check_expiring(self, integrations: Iterable[Integration], now: float) -> list[str]:
        """Send each due alert.client_secret_expiring once; returns the integrations alerted."""
        alerted = []
        for integration in integrations:
            expires_at = integration.client_secret_expires_at
            if preflight_state(expires_at, now) == "ok":
                # No date, or more than 30 days ahead: a warning sent earlier is over (the
                # secret was rotated early and the file has the new date, or none).
                await self._renewed(integration, expires_at, now)
                continue
            if expires_at is None:
                continue
            lead = secret_expiry.due_lead(expires_at, now, sent=())
            if lead is None:
                continue
            key = self._keys.client_secret_expiring_sent(integration.name, int(expires_at), lead)
            ttl = int(lead * SECONDS_PER_DAY + SECRET_EXPIRING_SENT_EXTRA_SECONDS)
            if not await self._redis.set(key, repr(now), nx=True, ex=ttl):
                continue
            try:
                await self._emit_expiring(integration, expires_at, lead, now)
            except BaseException:
                await self._redis.delete(key)
                raise
            # Open until the date moves away (_renewed) or a day past the expiry.
            open_for = int(expires_at - now + SECRET_EXPIRING_SENT_EXTRA_SECONDS)
            await self._redis.set(
                self._keys.client_secret_expiring_open(integration.name), repr(now), ex=open_for
            )
            alerted.append(integration.name)
        return alerted

    async def _renewed(
        self, integration: Integration, expires_at: float | None, now: float
    ) -> None:
        """The configured date moved beyond the warnings (or went): the warning sent earlier
        resolves, once (client_secret.accepted clears alert.client_secret_expiring)."""
        if await self._redis.getdel(self._keys.client_secret_expiring_open(integration.name)):
            await self._events.emit(
                events.CLIENT_SECRET_ACCEPTED, integration.name, None, now,
                provider=integration.provider, expired_since=None,
                renewed_until=events.iso8601(expires_at),
            )  # fmt: skip
            log.info("integration %s: the client secret's date moved; the warning is over",
                     integration.name)  # fmt: skip

    async def _emit_expiring(
        self, integration: Integration, expires_at: float, lead: int, now: float
    ) -> None:
        steps, source = rotation_steps(integration)
        connections = await ConnectionScan(self._redis, self._keys).count(integration.name)
        left = secret_expiry.days_left(expires_at, now)
        await self._events.emit(
            events.CLIENT_SECRET_EXPIRING, integration.name, None, now,
            provider=integration.provider,
            message=f"The integration's client secret expires in {left:.1f} days. Replace it "
            "before then: once it expires, every refresh and every new connection of this "
            "integration fails.",
            client_secret_expires_at=events.iso8601(expires_at), lead_days=lead,
            days_left=round(left, 2), connections=int(connections), fix=steps,
            fix_source=source,
        )  # fmt: skip
