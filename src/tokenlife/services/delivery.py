"""Alert delivery: its own consumer group on the event stream, one run at a time.

A run takes back what a crashed run left unacknowledged (XAUTOCLAIM), reads what is new,
keeps one notification per (connection, alert type) per window, groups storms, sends with
retries, dead-letters what still fails, and acknowledges everything it handled.

The run lock expires after `lock_seconds`; a run never outlives it. Each send (and each
retry pause) is bounded by the time the lock has left, less a margin for the final
acknowledgement, and a run out of time stops without acknowledging: the next run takes
the entries back and skips what was already delivered (the delivered marks), so a slow
target can neither overlap two runs nor lose an alert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tokenlife.adapters import scripts
from tokenlife.adapters.event_consumer import order, qualified, split_id
from tokenlife.adapters.keys import (
    ALERT_DELIVERED_TTL_SECONDS,
    ALERT_GROUP,
    ALERT_LOCK_TTL_SECONDS,
    Keys,
)
from tokenlife.adapters.notifiers import Target
from tokenlife.core import events
from tokenlife.core.notification_payload import notification_from, payload
from tokenlife.core.notifications import (
    CLEARS,
    FOLDS_INTO,
    SEVERITY,
    Alert,
    Notification,
    Route,
    folds,
    group,
    render,
    targets_for,
)
from tokenlife.errors import DeliveryError
from tokenlife.services import dead_letters, incidents

log = logging.getLogger(__name__)
GROUP = ALERT_GROUP
_READ_COUNT = 5000


# Lock time kept back for acknowledging, counting and releasing after the last send.
_LOCK_MARGIN_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    dedup_window_seconds: float
    retries: int
    retry_base_seconds: float
    claim_idle_seconds: float
    docs_url: str
    lock_seconds: float = ALERT_LOCK_TTL_SECONDS


class _OutOfTime(Exception):
    """The run's lock is about to expire: stop before another run can start."""


class AlertDelivery:
    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        targets: Mapping[str, Target],
        routes: tuple[Route, ...],
        default_targets: tuple[str, ...],
        policy: DeliveryPolicy,
        consumer: str,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._targets = targets
        self._routes = routes
        self._default = default_targets
        self._policy = policy
        self._consumer = consumer
        self._release = scripts.register(redis, "release_lock")
        self._deadline = 0.0
        self._folded: set[str] = set()  # event ids of alerts folded in this run

    async def run_once(self, now: float) -> Counter[str]:
        totals: Counter[str] = Counter()
        token = secrets.token_hex(8)
        lock_seconds = self._policy.lock_seconds
        # Measured from before the SET: the lock can only expire later than this.
        self._deadline = _monotonic() + lock_seconds * (1 - _LOCK_MARGIN_FRACTION)
        lock_ms = max(1, int(lock_seconds * 1000))
        if not await self._redis.set(self._keys.alerts_lock, token, nx=True, px=lock_ms):
            totals["skipped_locked"] += 1
            return totals
        try:
            await self._ensure_group()
            entries = await self._entries()
            items: list[tuple[str, str, Alert]] = []
            cleared: _Cleared = ({}, {})
            for entry_id, fields in entries:
                items += await self._consider(entry_id, fields, totals, cleared)
            # In the stream's order: a clear read before a new alert of its connection
            # resolves what was open before the run, then the alerts (one that may fold
            # into another after it: folding asks whether that one was delivered), then
            # the clears read after them, which close the incidents those opened too.
            before, after = cleared
            first = await incidents.clear(self._redis, self._keys, list(before.values()))
            self._folded = set()
            for notification in [*first, *sorted(group(items), key=_folds_later)]:
                await self._deliver(notification, now, totals)
            done = {(n.target, n.incident) for n in first}
            for notification in await incidents.clear(self._redis, self._keys, [*after.values()]):
                if (notification.target, notification.incident) not in done:
                    await self._deliver(notification, now, totals)
            totals["suppressed"] += len(self._folded)
            totals["folded"] += len(self._folded)
            if entries:
                await self._ack([e for e, _ in entries])
            totals["read"] += len(entries)
        except _OutOfTime:
            log.warning("alert delivery stopped: the run lock (%g s) is running out; the "
                        "next run resumes", lock_seconds)  # fmt: skip
            totals["stopped_out_of_time"] += 1
        finally:
            # Compare-and-delete in one step: a run whose lock expired never deletes the
            # lock of the run that took over.
            await self._release(keys=[self._keys.alerts_lock], args=[token])
        if totals:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, amount in totals.items():
                    pipe.hincrby(self._keys.counters, f"alerts:{name}", amount)
                await pipe.execute()
        return totals

    async def _ensure_group(self) -> None:
        for shard in self._keys.all_shards:
            try:
                # From "$": a new deployment doesn't page for the whole history of the stream.
                await self._redis.xgroup_create(
                    self._keys.events(shard), GROUP, id="$", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _entries(self) -> list[tuple[str, dict[str, str]]]:
        """Entries a dead run left behind, this consumer's own unacknowledged ones, then new,
        of every shard's stream in one round trip (a node each on a Cluster), merged in
        stream order (adapters/event_consumer.py)."""
        idle_ms = int(self._policy.claim_idle_seconds * 1000)
        # A run reads about as much as one stream's worth, whatever the shard count.
        count = max(1, _READ_COUNT // self._keys.shards)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self._keys.all_shards:
                stream = self._keys.events(shard)
                pipe.xautoclaim(stream, GROUP, self._consumer, min_idle_time=idle_ms,
                                start_id="0-0", count=count)  # fmt: skip
                pipe.xreadgroup(GROUP, self._consumer, {stream: "0"}, count=count)
                pipe.xreadgroup(GROUP, self._consumer, {stream: ">"}, count=count)
            replies = await pipe.execute()
        found: dict[str, dict[str, str]] = {}
        for shard in self._keys.all_shards:
            claimed, own, new = replies[3 * shard : 3 * shard + 3]
            for entry_id, fields in [*claimed[1], *_entries_of(own), *_entries_of(new)]:
                if fields is not None:  # an entry trimmed away since is None
                    found[qualified(entry_id, shard)] = fields
        return sorted(found.items(), key=lambda entry: order(entry[0]))

    async def _ack(self, entry_ids: list[str]) -> None:
        by_shard: dict[int, list[str]] = {}
        for entry_id in entry_ids:
            stream_id, shard = split_id(entry_id)
            by_shard.setdefault(shard or 0, []).append(stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.xack(self._keys.events(shard), GROUP, *ids)
            await pipe.execute()

    async def _consider(
        self,
        entry_id: str,
        fields: Mapping[str, str],
        totals: Counter[str],
        cleared: _Cleared,
    ) -> list[tuple[str, str, Alert]]:
        kind = fields.get("type", "")
        try:
            data = json.loads(fields.get("data", "{}"))
        except ValueError:
            return []
        alert = Alert(entry_id, kind, data)
        if kind in SEVERITY:
            # Counted for /metrics here: every alert event is read here once, routed or not,
            # whether a store write's Lua script or EventStream.publish put it on the stream.
            totals[f"raised:{kind}"] += 1
            targets = targets_for(alert, self._routes, self._default)
            if not targets:
                return []
            if (clear := cleared[1].pop(alert.dedup_key(), None)) is not None:
                cleared[0][alert.dedup_key()] = clear  # read before this alert
            if not await self._first_in_window(alert, targets):
                totals["suppressed"] += 1
                return []
            return [(t, "alert", alert) for t in targets]
        if kind in CLEARS and (kind != events.CONNECTION_AUTHORIZED
                               or data.get("status") == "active"):  # fmt: skip
            return await self._clear(entry_id, data, kind, cleared[1])
        return []

    async def _clear(
        self, entry_id: str, data: dict[str, Any], kind: str, after: dict[str, Alert]
    ) -> list[tuple[str, str, Alert]]:
        """Note what `kind` clears, for the incidents it closes (services/incidents.py), and
        end the window: the connection's next alert is told at once. The claim no longer
        carries the resolution (the incident does, released only once it is recorded), so
        it goes now; a claim made before incidents existed (no "v") still resolves as it
        did, to its targets."""
        legacy: list[tuple[str, str, Alert]] = []
        for cleared_type in CLEARS[kind]:
            resolved = Alert(entry_id, cleared_type, data)
            after[resolved.dedup_key()] = resolved
            held = await self._redis.getdel(self._keys.alert_sent(resolved.dedup_key()))
            claim: dict[str, Any] = json.loads(held) if held is not None else {"v": 2}
            if "v" not in claim:
                legacy += [(t, "resolved", resolved) for t in claim.get("targets", [])]
        return legacy

    async def _first_in_window(self, alert: Alert, targets: list[str]) -> bool:
        """Claim the (connection, alert type) for the window; a redelivered event finds its
        own claim and goes on."""
        key = self._keys.alert_sent(alert.dedup_key())
        value = json.dumps({"event_id": alert.event_id, "targets": targets,
                            "occurred_at": alert.occurred_at, "v": 2})  # fmt: skip
        window = int(self._policy.dedup_window_seconds)
        if await self._redis.set(key, value, nx=True, ex=window):
            return True
        held = await self._redis.get(key)
        return held is not None and json.loads(held).get("event_id") == alert.event_id

    async def _told_already(self, alert: Alert, target: str) -> bool:
        """Whether an alert `alert` folds into (core FOLDS_INTO) was delivered to `target`
        (its delivered mark): one message per degraded connection, not two back to back.
        Where the earlier one only was routed (dead-lettered, say), this one is sent."""
        for earlier in FOLDS_INTO.get(alert.type, ()):
            held = await self._redis.get(self._keys.alert_sent(alert.dedup_key(earlier)))
            if held is None:
                continue
            claim = json.loads(held)
            delivered = self._keys.alert_delivered(f"{claim.get('event_id')}:alert", target)
            if folds(alert, claim.get("occurred_at")) and await self._redis.exists(delivered):
                return True
        return False

    async def _deliver(self, notification: Notification, now: float, totals: Counter[str]) -> None:
        target = self._targets.get(notification.target)
        pending = [a for a in notification.alerts if not await self._was_delivered(a, notification)]
        if notification.kind == "alert" and notification.type in FOLDS_INTO:
            told = {a.event_id for a in pending if await self._told_already(a, notification.target)}
            self._folded |= told
            pending = [a for a in pending if a.event_id not in told]
        if target is None or not pending:
            return
        notification = Notification(notification.target, notification.kind, notification.type,
                                    notification.integration, tuple(pending),
                                    notification.incident)  # fmt: skip
        title, body = render(notification, self._policy.docs_url, now)
        body_json = payload(notification)
        error = await self._send(target, title, body, body_json, now)
        if error is not None:
            await self._dead_letter(notification.target, body_json, error)
            totals["dead_lettered"] += 1
        # Recorded (the incident, then the delivered marks): a run that stops in between
        # sends it again rather than leave an incident nothing closes.
        await self._record_incident(notification, body_json["incident_key"], error is None)
        if error is None:
            await self._mark_delivered(notification)
            totals["sent"] += 1

    async def _record_incident(self, notification: Notification, key: str, sent: bool) -> None:
        """A dead-lettered alert opens its incident too: its resolution goes to the same
        target, and tells `replay` that the dead letter is moot."""
        if notification.kind == "alert":
            await incidents.open_(self._redis, self._keys, notification, key)
        else:
            await incidents.resolved(self._redis, self._keys, notification, key, sent)

    async def resend(self, target_name: str, sent: dict[str, Any], now: float) -> str | None:
        """A dead letter's notification once more, through the same retries as a run: its
        payload as it was (the same notification_id), its text rendered for `now`. None
        when the target accepted it, else why not (the caller dead-letters it again)."""
        target = self._targets.get(target_name)
        if target is None:
            raise DeliveryError(f"target {target_name} is not configured")
        title, body = render(notification_from(target_name, sent), self._policy.docs_url, now)
        self._deadline = _monotonic() + self._policy.lock_seconds * (1 - _LOCK_MARGIN_FRACTION)
        try:
            return await self._send(target, title, body, sent, now)
        except _OutOfTime:
            return "timed out"

    async def _send(
        self, target: Target, title: str, body: str, payload: dict[str, Any], now: float
    ) -> str | None:
        """None once delivered, else the last error after every retry."""
        error = ""
        for attempt in range(self._policy.retries + 1):
            try:
                async with asyncio.timeout(self._time_left()):
                    await target.send(title, body, payload, now)
            except (DeliveryError, TimeoutError) as exc:
                self._time_left()  # the run's time ran out, not the target's: stop here
                error = str(exc) or "timed out"
                if attempt < self._policy.retries:
                    pause = self._policy.retry_base_seconds * 2**attempt
                    await asyncio.sleep(min(pause, self._time_left()))
                continue
            return None
        self._time_left()  # out of time in the last pause: leave it for the next run
        return error

    def _time_left(self) -> float:
        left = self._deadline - _monotonic()
        if left <= 0:
            raise _OutOfTime
        return left

    async def _was_delivered(self, alert: Alert, notification: Notification) -> bool:
        key = self._keys.alert_delivered(_delivery_id(alert, notification), notification.target)
        return bool(await self._redis.exists(key))

    async def _mark_delivered(self, notification: Notification) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for alert in notification.alerts:
                key = self._keys.alert_delivered(
                    _delivery_id(alert, notification), notification.target
                )
                pipe.set(key, "1", ex=ALERT_DELIVERED_TTL_SECONDS)
            await pipe.execute()

    async def _dead_letter(self, target: str, payload: dict[str, Any], error: str) -> None:
        log.error("alert to %s failed after %d attempts: %s", target,
                  self._policy.retries + 1, error)  # fmt: skip
        await dead_letters.add(self._redis, self._keys, target, payload, error)


# The clears of a run by dedup key: those read before a new alert of theirs, and the rest.
_Cleared = tuple[dict[str, Alert], dict[str, Alert]]


def _folds_later(notification: Notification) -> bool:
    return notification.type in FOLDS_INTO


def _monotonic() -> float:
    return asyncio.get_running_loop().time()


def _delivery_id(alert: Alert, notification: Notification) -> str:
    """An alert's event is delivered once per target; a clearing event once per incident
    it resolves there (one connect clears several alert types, each its own incident)."""
    if notification.kind == "resolved":
        return f"{alert.event_id}:resolved:{notification.type}:{notification.incident}"
    return f"{alert.event_id}:{notification.kind}"


def _entries_of(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    if not reply:
        return []
    streams = cast(list[tuple[str, list[tuple[str, dict[str, str] | None]]]], reply)
    return [entry for _, entries in streams for entry in entries]
