"""Incidents: what an alert notification opened at a target, so that its RESOLVED closes it.

A grouped alert (a storm of a thousand connections, one message) opens one incident, keyed
by the notification's `incident_key`, while resolutions arrive one connection at a time.
So each incident remembers which of its connections have not cleared yet (the set
alert_incident_open), and each (connection, alert type) which incidents it is part of
(alert_incidents). A clearing event takes its connection out of every incident it is in;
the incident's last connection to clear makes the RESOLVED notification, carrying the
incident's own key. Nothing is taken out of the incident that resolution is for until the
resolution was recorded (delivered or dead-lettered): a run that stops before leaves it for
the next run, which reads the same clearing event again (docs/alerts.md#resolved).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from tokenlife.adapters.keys import ALERT_INCIDENT_TTL_SECONDS, Keys
from tokenlife.core.notifications import Alert, Notification


async def open_(redis: Redis, keys: Keys, notification: Notification, incident: str) -> None:
    """An alert notification was recorded for its target: its connections are open in
    `incident` until they clear."""
    target = notification.target
    member = json.dumps([target, incident])
    dedup_keys = [a.dedup_key() for a in notification.alerts]
    async with redis.pipeline(transaction=False) as pipe:
        for dedup_key in dedup_keys:
            pipe.sadd(keys.alert_incidents(dedup_key), member)
            pipe.expire(keys.alert_incidents(dedup_key), ALERT_INCIDENT_TTL_SECONDS)
        pipe.sadd(keys.alert_incident_open(target, incident), *dedup_keys)
        pipe.expire(keys.alert_incident_open(target, incident), ALERT_INCIDENT_TTL_SECONDS)
        # The same connections alerting again after a resolution: open once more.
        pipe.delete(keys.alert_incident_resolved(target, incident))
        await pipe.execute()


async def clear(redis: Redis, keys: Keys, cleared: Sequence[Alert]) -> list[Notification]:
    """The RESOLVED notifications `cleared` (clearing events under the alert type each
    clears) make: one per incident whose every open connection is among them. A connection
    cleared in an incident that stays open is taken out of it right away (done again,
    harmlessly, when its event is read again); an incident resolved here is left as it is
    until `resolved` records its notification."""
    clearing = {a.dedup_key(): a for a in cleared}
    incidents: dict[tuple[str, str], list[str]] = {}
    for dedup_key in clearing:
        for raw in await redis.smembers(keys.alert_incidents(dedup_key)):
            target, incident = json.loads(raw)
            incidents.setdefault((target, incident), []).append(dedup_key)
    found = []
    for (target, incident), members in incidents.items():
        open_key = keys.alert_incident_open(target, incident)
        still_open = set(await redis.smembers(open_key)) - set(members)
        if still_open:
            await _leave(redis, keys, target, incident, members)
        else:
            alerts = tuple(clearing[m] for m in members)
            found.append(Notification(target, "resolved", alerts[0].type,
                                      alerts[0].integration, alerts, incident))  # fmt: skip
    return found


async def resolved(
    redis: Redis, keys: Keys, resolution: Notification, incident: str, delivered: bool
) -> None:
    """The RESOLVED notification of `incident` was recorded: the incident is closed; when
    delivered, remembered as resolved (a dead letter of its alert is not replayed then)."""
    target = resolution.target
    await _leave(redis, keys, target, incident, [a.dedup_key() for a in resolution.alerts])
    await redis.delete(keys.alert_incident_open(target, incident))
    if delivered:
        await redis.set(keys.alert_incident_resolved(target, incident), "1",
                        ex=ALERT_INCIDENT_TTL_SECONDS)  # fmt: skip


async def is_resolved(redis: Redis, keys: Keys, target: str, incident: str) -> bool:
    return bool(await redis.exists(keys.alert_incident_resolved(target, incident)))


async def _leave(
    redis: Redis, keys: Keys, target: str, incident: str, dedup_keys: Iterable[str]
) -> None:
    member = json.dumps([target, incident])
    async with redis.pipeline(transaction=False) as pipe:
        for dedup_key in dedup_keys:
            pipe.srem(keys.alert_incidents(dedup_key), member)
            pipe.srem(keys.alert_incident_open(target, incident), dedup_key)
        await pipe.execute()
