"""What the ops dashboard shows, read for one API key's integrations, and its one action
that waits: "refresh now". The web layer only renders what this returns.

Everything here is metadata: connection records are parsed without decrypting anything,
alerts and dead letters carry no token values (docs/events.md), so no figure can show one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from tokenlife.adapters.connection_record import Connection
from tokenlife.adapters.connection_scan import ConnectionScan
from tokenlife.adapters.event_consumer import order, qualified
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.refresh_history import RefreshHistory
from tokenlife.adapters.token_store import TokenStore
from tokenlife.core.notifications import SEVERITY
from tokenlife.core.policy import SECONDS_PER_DAY, Status
from tokenlife.core.refresh_chart import RefreshChart, refresh_chart
from tokenlife.core.refresh_refusal import RefreshRefusal, requested_due
from tokenlife.services import dead_letters
from tokenlife.services.dead_letters import DeadLetter

EXPIRY_HORIZON_SECONDS = 7 * SECONDS_PER_DAY
# The latest events looked through for alerts (and each connection's diagnosis): bounded,
# so a page load costs the same on a busy stream.
EVENTS_SCANNED = 2000
ALERTS_SHOWN = 20
DEAD_LETTERS_SHOWN = 20
ATTENTION_SHOWN = 200
_ATTENTION_ORDER = {Status.REAUTHORIZATION_REQUIRED: 0, Status.DEGRADED: 1}


@dataclass(frozen=True, slots=True)
class Attention:
    """A connection that needs someone, with the latest alert event about it that carries a
    diagnosis (causes, evidence, fixes), when that is still among the recent events: a later
    alert.access_token_expiring must not hide why the connection is degraded."""

    connection: Connection
    alert: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class AlertEntry:
    type: str
    severity: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Figures:
    now: float
    integrations: tuple[str, ...]
    by_status: Mapping[str, int]
    by_integration: Mapping[str, Mapping[str, int]]
    attention: tuple[Attention, ...]
    attention_total: int
    expiring: tuple[Connection, ...]
    refreshes: RefreshChart
    alerts: tuple[AlertEntry, ...]
    dead_letters: tuple[DeadLetter, ...]
    corrupt_records: int = 0
    statuses: tuple[str, ...] = field(default=tuple(s.value for s in Status))


class DashboardReader:
    def __init__(
        self, redis: Redis, keys: Keys, tokens: TokenStore, integrations: Iterable[str]
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._tokens = tokens
        self._integrations = integrations  # read at each call: discovery may add some
        self._scan = ConnectionScan(redis, keys)
        self._history = RefreshHistory(redis, keys)

    async def read(self, allows: Callable[[str], bool], now: float) -> Figures:
        names = tuple(sorted(n for n in self._integrations if allows(n)))
        stored, corrupt = await self._scan.read(names)
        connections = [c.effective(now) for c in stored]
        alerts, latest = await self._alerts(allows)
        minutes = await self._history.read(now)
        return shape(
            now, names, connections, alerts, latest, await self._dead_letters(allows),
            refresh_chart([(m.minute, m.counts) for m in minutes], allows), corrupt,
        )  # fmt: skip

    async def _alerts(
        self, allows: Callable[[str], bool]
    ) -> tuple[list[AlertEntry], dict[tuple[str, str], Mapping[str, Any]]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                pipe.xrevrange(self._keys.events(shard), count=EVENTS_SCANNED)
            replies = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        # The newest EVENTS_SCANNED of every shard's stream, newest first.
        merged = [(qualified(entry_id, shard), fields)
                  for shard, reply in enumerate(replies) for entry_id, fields in reply]  # fmt: skip
        merged.sort(key=lambda entry: order(entry[0]), reverse=True)
        entries = merged[:EVENTS_SCANNED]
        found: list[AlertEntry] = []
        latest: dict[tuple[str, str], Mapping[str, Any]] = {}
        for _, fields in entries:
            kind = fields.get("type", "")
            if kind not in SEVERITY:
                continue
            try:
                data = json.loads(fields.get("data", "{}"))
            except ValueError:
                continue
            if not isinstance(data, dict) or not allows(str(data.get("integration", ""))):
                continue
            found.append(AlertEntry(kind, SEVERITY[kind], data))
            owner = (str(data.get("integration")), str(data.get("connection_id")))
            if data.get("diagnosis"):  # newest first: keep the first
                latest.setdefault(owner, data | {"type": kind})
        return found, latest

    async def _dead_letters(self, allows: Callable[[str], bool]) -> list[DeadLetter]:
        # A key limited to some integrations sees their notifications only; one that names
        # none (a fleet-wide one) only a key for every integration sees.
        letters = await dead_letters.newest(self._redis, self._keys, EVENTS_SCANNED)
        shown = [d for d in letters if allows(str(d.payload.get("integration") or ""))]
        return shown[:DEAD_LETTERS_SHOWN]

    async def refresh_now(
        self,
        integration: str,
        connection_id: str,
        queue: Callable[[float], Awaitable[None]],
        *,
        wait_seconds: float,
        clock: Callable[[], float],
    ) -> tuple[str, Connection, RefreshRefusal | None]:
        """Queue a refresh as POST /api/.../refresh does (`queue` gets the due time,
        core.refresh_refusal.requested_due) and wait up to `wait_seconds` for the worker
        to write its outcome: "refreshed", "failed", "queued" (not done yet), or, with the
        refusal saying why and the fix, nothing queued: "no_refresh_token",
        "reauthorization_required" (core.refresh_refusal, as the API and the CLI)."""
        before = await self._tokens.get(integration, connection_id)
        now = clock()
        refusal = before.refresh_refusal(now)
        if refusal is not None:
            return refusal.kind.value, before, refusal
        await queue(requested_due(before.next_refresh_at, now))
        deadline = clock() + wait_seconds
        after = before
        while after.version == before.version and clock() < deadline:
            await asyncio.sleep(0.1)
            after = await self._tokens.get(integration, connection_id)
        if after.version == before.version:
            return "queued", after, None
        refreshed = after.last_refreshed_at != before.last_refreshed_at
        return ("refreshed" if refreshed else "failed"), after, None


def shape(
    now: float,
    names: tuple[str, ...],
    connections: list[Connection],
    alerts: list[AlertEntry],
    latest: Mapping[tuple[str, str], Mapping[str, Any]],
    dead_letters: list[DeadLetter],
    chart: RefreshChart,
    corrupt: int = 0,
) -> Figures:
    """The figures from what was read (connections already `effective` at `now`). Pure."""
    by_status = {s.value: 0 for s in Status}
    by_integration = {name: {s.value: 0 for s in Status} for name in names}
    for c in connections:
        by_status[c.status.value] += 1
        by_integration.setdefault(c.integration, {s.value: 0 for s in Status})
        by_integration[c.integration][c.status.value] += 1
    needing = sorted(
        (c for c in connections if c.status is not Status.ACTIVE),
        key=lambda c: (_ATTENTION_ORDER.get(c.status, 2), -c.updated_at, c.integration,
                       c.connection_id),
    )  # fmt: skip
    attention = tuple(
        Attention(c, latest.get((c.integration, c.connection_id)))
        for c in needing[:ATTENTION_SHOWN]
    )
    # Tokens that will lapse: a refreshable one is renewed before it expires, so only
    # those without a refresh token are listed (and the overdue ones are under attention).
    expiring = tuple(sorted(
        (c for c in connections if not c.has_refresh_token and c.expires_at is not None
         and now < c.expires_at <= now + EXPIRY_HORIZON_SECONDS),
        key=lambda c: (c.expires_at or 0.0, c.integration, c.connection_id),
    ))  # fmt: skip
    return Figures(
        now=now, integrations=names, by_status=by_status, by_integration=by_integration,
        attention=attention, attention_total=len(needing), expiring=expiring,
        refreshes=chart, alerts=tuple(alerts[:ALERTS_SHOWN]),
        dead_letters=tuple(dead_letters), corrupt_records=corrupt,
    )  # fmt: skip
