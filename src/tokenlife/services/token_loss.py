"""When a rotated refresh token may be lost: the provider answered a refresh, but the new
tokens could not be saved (Redis stayed away past the retries) or the save found that
another worker had re-sent the old token meanwhile. The connection is marked degraded,
`alert.refresh_failing` quotes the provider's reuse grace, and the stored (old) token is
retried at once, which works inside that grace."""

from __future__ import annotations

import logging
from dataclasses import replace

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import new_event
from tokenlife.core import events
from tokenlife.core.events import Event
from tokenlife.core.integration import Integration
from tokenlife.core.policy import Status
from tokenlife.errors import UnknownConnectionError
from tokenlife.services.durable_write import DurableWriter
from tokenlife.services.refresh_failure import reuse_grace

log = logging.getLogger(__name__)

# Why a rotated refresh token may be lost: the save gave up, or found a newer version.
SAVE_FAILED = "save_failed"
ROTATION_CONFLICT = "rotation_conflict"


def grace_wording(seconds: int | None) -> str:
    """What the catalogue says about reusing the old refresh token, for an alert: 0 is
    documented (Auth0's overlap period is off by default), not missing."""
    if seconds is None:
        return "no reuse grace is documented for this provider"
    if seconds == 0:
        return "no grace: the provider revokes the family when an old refresh token is reused"
    return f"the provider documents a reuse grace of {seconds} s for the old one"


def lost_token_alert(
    integration: Integration,
    connection: Connection,
    now: float,
    rotated: bool,
    error: str = SAVE_FAILED,
) -> Event:
    """The provider answered a refresh, but Redis stayed away until the retries ran out
    (SAVE_FAILED); or the save found that another worker had written meanwhile, having
    re-sent the refresh token this one rotated (ROTATION_CONFLICT: a claim after a Redis
    outage longer than the lock)."""
    grace = reuse_grace(integration)
    seconds = grace["reuse_grace_seconds"]
    window = grace_wording(seconds)
    return new_event(
        events.REFRESH_FAILING, connection.integration, connection.connection_id, now,
        provider=connection.provider, error=error,
        error_description=(
            ("The provider answered a refresh but the new tokens could not be saved: "
             if error == SAVE_FAILED else
             "The provider answered a refresh, but another worker re-sent the old refresh "
             "token before the new one could be saved (Redis was away longer than the "
             "lock): ")
            + ("a rotated refresh token may be lost; " if rotated else "")
            + window + ". The next attempt uses the stored refresh token; if it fails with "
            "invalid_grant, the user has to connect again."
        ),
        failing_since=events.iso8601(connection.failing_since or now),
        failed_attempts=connection.consecutive_failures + 1,
        access_token_expired_at=events.iso8601(connection.expires_at or now),
        next_attempt_at=events.iso8601(now),
        refresh_token_may_have_rotated=False, refresh_token_may_be_lost=rotated, **grace,
    )  # fmt: skip


class TokenLoss:
    """Marks a connection whose rotated refresh token may be lost."""

    def __init__(self, writer: DurableWriter) -> None:
        self._writer = writer

    async def mark_lost(
        self, integration: Integration, connection: Connection, now: float, rotated: bool
    ) -> None:
        """Say so on the connection, with the provider's reuse grace, once Redis is back;
        the next attempt re-sends the stored (old) refresh token at once, which works
        inside that grace window."""
        alert = lost_token_alert(integration, connection, now, rotated)
        try:
            # No secret is held any more: wait for Redis at least a minute to say so.
            retry = self._writer.retry
            await self._writer.write(
                connection, "marking a possibly lost refresh token",
                retry=replace(retry, seconds=max(retry.seconds, 60.0)),
                now=now, event=alert, schedule_at=now,
                set_fields={"status": Status.DEGRADED.value,
                            "status_reason": "refresh_token_may_be_lost",
                            "last_error": "save_failed", "refresh_failing_alerted": "1"},
            )  # fmt: skip
        except Exception:
            log.error("refresh of %s/%s: could not mark the connection either",
                      connection.integration, connection.connection_id)  # fmt: skip

    async def rotation_conflict(
        self, integration: Integration, connection: Connection, now: float
    ) -> None:
        """Our save found a newer version although the provider had rotated the token we
        sent. The residual race of a Redis outage longer than the lock: the lock expired,
        a beat re-claimed the connection as soon as Redis returned, and another worker
        re-sent the refresh token this one had rotated, before this save's next try (they
        are at most 0.5 s apart). Inside a reuse grace that costs nothing; at a provider
        that rotates strictly without one, the family may be revoked. Say so, loudly; and
        unless the connection is already marked for re-authorization, retry at once with
        what is stored, which tells whether it still works (docs/troubleshooting.md)."""
        try:
            current = await self._writer.store.get(connection.integration, connection.connection_id)
        except UnknownConnectionError:
            return  # deleted meanwhile: nothing left to lose
        log.error("refresh of %s/%s: a newer version was saved after the provider rotated "
                  "the refresh token; the rotated token may be lost",
                  connection.integration, connection.connection_id)  # fmt: skip
        alert = lost_token_alert(integration, current, now, True, error=ROTATION_CONFLICT)
        fields = {"refresh_failing_alerted": "1"}
        schedule_at = None
        if current.status is not Status.REAUTHORIZATION_REQUIRED:
            fields |= {"status": Status.DEGRADED.value,
                       "status_reason": "refresh_token_may_be_lost"}  # fmt: skip
            schedule_at = now
        try:
            await self._writer.write(current, "marking a possibly lost refresh token", now=now,
                              event=alert, set_fields=fields, schedule_at=schedule_at)  # fmt: skip
        except Exception:
            log.error("refresh of %s/%s: could not mark the connection",
                      connection.integration, connection.connection_id)  # fmt: skip
