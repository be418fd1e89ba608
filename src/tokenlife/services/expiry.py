"""Connections without a refresh token: alert ahead of expiry, then mark them lapsed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.event_stream import new_event
from tokenlife.adapters.locks import Lease
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core import events, expiry_alerts
from tokenlife.core.diagnosis import Cause
from tokenlife.core.policy import Status

log = logging.getLogger(__name__)


class ExpiryWatch:
    def __init__(self, *, store: TokenStore, lead_seconds: Sequence[float]) -> None:
        self._store = store
        self._leads = tuple(lead_seconds)

    async def check(self, connection: Connection, now: float, lease: Lease | None = None) -> str:
        """Called when the connection comes due; returns what it did."""
        expires_at = connection.expires_at
        if expires_at is None:
            await self._store.update(connection, now=now, unschedule=True, lease=lease)
            return "unscheduled"
        if now >= expires_at:
            return await self._lapse(connection, expires_at, now, lease)
        sent = set(connection.expiry_alerts_sent)
        lead = expiry_alerts.due_lead(
            expires_at=expires_at, lead_times=self._leads, sent=sent, now=now
        )
        if lead is not None:
            sent |= expiry_alerts.leads_covered(lead, self._leads)
        next_at = expiry_alerts.next_check_at(
            expires_at=expires_at, lead_times=self._leads, sent=sent, now=now
        )
        alert = None
        if lead is not None:
            alert = new_event(
                events.ACCESS_TOKEN_EXPIRING, connection.integration, connection.connection_id,
                now, provider=connection.provider,
                message="The access token expires soon and there is no refresh token; the "
                "user will have to connect again.",
                expires_at=events.iso8601(expires_at), lead_seconds=lead,
                seconds_left=round(expires_at - now), status=connection.status.value,
            )  # fmt: skip
        written = await self._store.update(
            connection, now=now, schedule_at=next_at, event=alert, lease=lease,
            set_fields={"expiry_alerts_sent": ",".join(repr(x) for x in sorted(sent))},
        )  # fmt: skip
        if written is None:
            return "conflict"
        return "waiting" if alert is None else "alerted"

    async def _lapse(
        self, connection: Connection, expires_at: float, now: float, lease: Lease | None
    ) -> str:
        cause = Cause(
            cause="The access token expired and the provider never issued a refresh token.",
            fix="Ask the user to connect again. If the connection was degraded, fix the cause "
            "named in its alert.refresh_token_missing first, or it will lapse again.",
            evidence=f"expires_at {events.iso8601(expires_at)}, no refresh token stored",
        )
        alert = new_event(
            events.REAUTHORIZATION_REQUIRED, connection.integration, connection.connection_id,
            now, provider=connection.provider,
            message="The access token expired without a refresh token; the user has to "
            "connect again.",
            error="access_token_expired", error_description=None,
            diagnosis=[cause.as_dict()],
        )  # fmt: skip
        written = await self._store.update(
            connection, now=now, unschedule=True, event=alert, lease=lease,
            set_fields={"status": Status.REAUTHORIZATION_REQUIRED.value,
                        "last_error": "access_token_expired"},
        )  # fmt: skip
        if written is None:
            return "conflict"
        log.warning("connection %s/%s lapsed: access token expired without refresh token",
                    connection.integration, connection.connection_id)  # fmt: skip
        return "lapsed"
