"""Every Redis key tokenlife uses, and why each TTL is what it is. Nothing else builds keys."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from redis.crc import key_slot

# A user has this long to finish the consent screen before the state is forgotten.
PENDING_AUTHORIZATION_TTL_SECONDS = 600
# A claimed state stays bound to the claiming task while Celery retries the exchange,
# and once the exchange ends it holds the outcome (the "exchanged" mark) that a task
# delivered again gets back instead of sending the code twice. The broker redelivers an
# unacknowledged task after its visibility timeout (1 hour with Celery's Redis transport,
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html);
# the mark must outlive that and the retry schedule (exchange_max_retries x
# exchange_retry_max_seconds, 10 minutes by default), so two hours.
EXCHANGE_CLAIM_TTL_SECONDS = 2 * 3600
# A refresh holds its connection's lock at most this long; a crashed worker's lock frees
# itself. Longer than one token request (the HTTP timeout caps it at 300 s).
REFRESH_LOCK_TTL_SECONDS = 330
# A delivery run holds its lock at most this long; longer than retries of a slow target.
ALERT_LOCK_TTL_SECONDS = 300
# A notification delivered to a target is remembered this long, so a redelivered event
# (a worker died before acknowledging it) is not sent twice.
ALERT_DELIVERED_TTL_SECONDS = 7 * 86400
# An incident (one alert notification to one target) stays open until its last connection
# clears; a connection deleted while alerting never clears, so its incident is forgotten after
# this long (a quarter), and a delivered resolution is remembered as long, so a dead letter
# of the alert it resolved is not replayed (services/incidents.py).
ALERT_INCIDENT_TTL_SECONDS = 90 * 86400
# A dead letter being replayed is claimed this long: past one resend (bounded by the delivery
# lock's time), so two `replay --all` runs don't both send it.
DEAD_LETTER_CLAIM_TTL_SECONDS = ALERT_LOCK_TTL_SECONDS
# A provider slot is returned when a refresh ends; this only frees slots of crashed workers
# (or of claims whose caller went away), and never outlives the claim's lock.
PROVIDER_SLOT_TTL_SECONDS = 330
# A minute of refresh outcomes is read for an hour (the dashboard's chart); kept a few minutes
# longer, so the oldest minute shown is never half-expired.
REFRESH_HISTORY_TTL_SECONDS = 3600 + 300
# A dashboard login lasts a working day; logging out ends it sooner.
DASHBOARD_SESSION_TTL_SECONDS = 8 * 3600
# An expired client secret is alerted once per integration; a secret still refused after
# this long alerts again (a reminder), and a mark nothing cleared (every connection deleted)
# can't silence the next expiry for good.
CLIENT_SECRET_EXPIRED_TTL_SECONDS = 30 * 86400
# An alert.client_secret_expiring of one lead is remembered past that lead's stage (a day
# beyond it), so a worker restarted inside the stage does not send it again.
SECRET_EXPIRING_SENT_EXTRA_SECONDS = 86400
# An open breaker that no outcome reached for this long (every worker stopped, the host's
# integrations removed) is forgotten: closed again, it holds nothing back.
BREAKER_OPEN_TTL_SECONDS = 86400
# Alert delivery's consumer group on the event streams (services/delivery.py).
ALERT_GROUP = "tokenlife-alerts"
# No claim lease or lock is shorter: a refresh needs a moment, and a lease shorter than a
# beat tick or two would hand the same connection out again while its batch is queued.
MIN_LEASE_SECONDS = 15


# Shards when the setting says nothing (TOKENLIFE_REDIS_SHARDS): enough that no one key of a
# fleet of millions is hot and that a 3-master Cluster gets 5 or 6 each.
DEFAULT_SHARDS = 16
# Each shard's tag is found by trying names until one lands in the shard's share of the slots
# (shard_tags); beyond this, that search would take a noticeable time at start-up.
MAX_SHARDS = 256
_SLOTS = 16384


@cache
def shard_tags(shards: int) -> tuple[str, ...]:
    """A hash tag per shard, chosen so that shard i's slot lies in the i-th of `shards` equal
    ranges of Redis Cluster's 16,384 slots. `redis-cli --cluster create` gives each master a
    contiguous range, so the shards spread evenly over the masters (tags named "0".."15"
    would land wherever CRC16 puts them: 9, 4 and 3 on three masters, say)."""
    tags = []
    for shard in range(shards):
        low, high = shard * _SLOTS // shards, (shard + 1) * _SLOTS // shards
        attempt = 0
        while not low <= key_slot(_tag(shards, shard, attempt).encode()) < high:
            attempt += 1
        tags.append(_tag(shards, shard, attempt))
    return tuple(tags)


def _tag(shards: int, shard: int, attempt: int) -> str:
    # The count leads, so two layouts never share a key (a reshard moves between them).
    return f"{shards}.{shard}.{attempt}"


def shard_of(name: str, shards: int) -> int:
    """The shard of a connection (its schedule member) or of an OAuth state: CRC32, the
    same in every process (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode()) % shards


@dataclass(frozen=True, slots=True)
class Keys:
    """Every key of a connection, and of a shard of the fleet, carries the shard's hash tag
    (`{prefix}:{3.17}:conn:...`), so each Lua script touches keys of one Cluster slot:
    the connection, its lock, its shard's schedule, deadlines, index, counts, backoff sets
    and event stream. What the whole fleet shares (counters, breakers) has keys of its own,
    written outside the per-connection scripts (docs/cluster.md)."""

    prefix: str
    shards: int = DEFAULT_SHARDS

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be within 1..{MAX_SHARDS}, not {self.shards}")
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("the key prefix must not contain { or }: they make a hash tag")

    # Shards.
    @property
    def all_shards(self) -> range:
        return range(self.shards)

    def shard(self, integration: str, connection_id: str) -> int:
        return shard_of(self.member(integration, connection_id), self.shards)

    def state_shard(self, state: str) -> int:
        """The shard of a pending authorization's keys: a state is drawn so that it is the
        shard of its connection (services/exchange.py), and the exchange's last step (one
        script) marks the state's claim and saves the connection together."""
        return shard_of(state, self.shards)

    def _tagged(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard_tags(self.shards)[shard]}}}"

    def unused(self, shard: int) -> str:
        """A key of the shard that no script writes: what fills an optional KEYS place (on a
        Cluster every key of a script must be in one slot, a placeholder too)."""
        return f"{self._tagged(shard)}:unused"

    @property
    def layout(self) -> str:
        """Hash: how the keys under this prefix are laid out (`shards`); a process whose
        setting disagrees refuses to start (adapters/key_layout.py)."""
        return f"{self.prefix}:layout"

    def pending(self, state: str) -> str:
        return f"{self._tagged(self.state_shard(state))}:pending:{state}"

    def exchanging(self, state: str) -> str:
        return f"{self._tagged(self.state_shard(state))}:exchanging:{state}"

    def connect_session(self, integration: str, token_hash: str) -> str:
        """A connect session under the SHA-256 of its token, never the token; it lives
        TOKENLIFE_CONNECT_SESSION_TTL_SECONDS (a setting: how long an app's link may wait in
        an inbox is the app's call) and is deleted when used. The integration
        is part of the key, so a token presented for another integration finds nothing and
        leaves the session intact."""
        return f"{self.prefix}:connect-session:{integration}:{token_hash}"

    def connection(self, integration: str, connection_id: str) -> str:
        shard = self.shard(integration, connection_id)
        return f"{self._tagged(shard)}:conn:{integration}:{connection_id}"

    def pattern(self, family: str) -> str:
        """A SCAN MATCH pattern for a family of tagged keys in every shard of every layout:
        "conn", "conns", "pending", "exchanging" (braces are plain characters in a glob)."""
        return f"{self.prefix}:{{*}}:{family}:*"

    def layout_pattern(self, rest: str) -> str:
        """A SCAN MATCH pattern for keys of this layout's shards only: `rest` after the tag."""
        return f"{self.prefix}:{{{self.shards}.*}}:{rest}"

    def connection_named(self, key: str) -> tuple[str, str] | None:
        """(integration, connection_id) of a key built by `connection`, for naming it to a
        person (the doctor's examples); None for another key. Split at the first colon."""
        head = f"{self.prefix}:{{"
        rest = key[len(head) :].partition("}:conn:")[2] if key.startswith(head) else ""
        if ":" not in rest:
            return None
        integration, connection_id = rest.split(":", 1)
        return integration, connection_id

    def connections(self, integration: str, shard: int) -> str:
        """The connection ids of one integration in one shard: a sorted set, all scores 0,
        so a listing pages through it in id order (ZRANGEBYLEX) and resumes after the
        last id it returned, whatever was added or deleted meanwhile."""
        return f"{self._tagged(shard)}:conns:{integration}"

    def schedule(self, shard: int) -> str:
        """Sorted set of a shard's connections scored by when to look at them next."""
        return f"{self._tagged(shard)}:schedule"

    def schedule_of(self, integration: str, connection_id: str) -> str:
        return self.schedule(self.shard(integration, connection_id))

    def status_counts(self, shard: int) -> str:
        """Hash of a shard's connections by `{integration}:{status}` (stored status), kept by
        the scripts that write a status (save, update, delete) in the same step, so a scrape
        reads the shards' hashes, not the connections; `_counted_at` says since when it is
        whole (adapters/status_counts.py counts it afresh when that field is missing)."""
        return f"{self._tagged(shard)}:status-counts"

    def status_count_keys(self, shard: int) -> tuple[str, str, str, str, str, str]:
        """What a script that writes a status moves (move_counts.lua): the counts, a
        recount's flag (held by the recounting process, with a TTL), the set of connections
        its walk has counted, its shadow counts (they replace the counts when it ends), and
        the indexes of degraded and of reauthorization_required connections."""
        base = self.status_counts(shard)
        return (base, f"{base}:recounting", f"{base}:walked", f"{base}:shadow",
                self.status_index(shard, "degraded"),
                self.status_index(shard, "reauthorization_required"))  # fmt: skip

    def status_index(self, shard: int, status: str) -> str:
        """Sorted set (scores 0: in member order, like `connections`) of a shard's
        connections (schedule members) stored with `status`, kept for
        degraded and reauthorization_required only: what a listing filtered by status
        reads instead of every record (adapters/connection_listing.py)."""
        return f"{self._tagged(shard)}:by-status:{status}"

    def lock(self, integration: str, connection_id: str) -> str:
        shard = self.shard(integration, connection_id)
        return f"{self._tagged(shard)}:lock:{integration}:{connection_id}"

    def token_deadlines(self, shard: int) -> str:
        """Sorted set of a shard's scheduled connections scored by when their access token
        lapses; claims bound their leases by it."""
        return f"{self._tagged(shard)}:deadlines"

    def backoff(self, provider: str, shard: int) -> str:
        """Sorted set of one provider's connections in one shard waiting out a failure
        backoff, scored by their retry time; a recovery of that provider brings them
        forward."""
        return f"{self._tagged(shard)}:backoff:{provider}"

    def provider_slots(self, provider: str) -> str:
        """Sorted set of in-flight refresh tokens for one provider, scored by expiry: one key
        for the fleet, so the provider's limit is one number (taken beside the claim,
        adapters/locks.py)."""
        return f"{self.prefix}:slots:{provider}"

    def breaker(self, scope: str) -> str:
        """Hash: the circuit breaker of one provider host (core/provider_breaker.py). Closed,
        its window's counts, gone after two idle windows; open, its times, kept
        BREAKER_OPEN_TTL_SECONDS past the last outcome counted. Tagged with the set of open
        breakers, which the same script writes."""
        return f"{self.prefix}:{{breakers}}:breaker:{scope}"

    def breaker_gate(self, scope: str, shard: int) -> str:
        """Hash: an open breaker as a shard's claims see it (its probe times), written when
        the breaker opens and deleted when it closes (adapters/provider_breakers.py)."""
        return f"{self._tagged(shard)}:breaker-gate:{scope}"

    def breaker_held(self, scope: str, shard: int) -> str:
        """Sorted set of a shard's scheduled refreshes an open breaker held, scored by when
        their access token lapses; emptied (soonest first) when the host answers again."""
        return f"{self._tagged(shard)}:breaker-held:{scope}"

    @property
    def breakers_open(self) -> str:
        """Set of the provider hosts whose breaker is open (metrics, the doctor)."""
        return f"{self.prefix}:{{breakers}}:breakers-open"

    @staticmethod
    def member(integration: str, connection_id: str) -> str:
        # Integration names never contain ':', so the first ':' splits a member.
        return f"{integration}:{connection_id}"

    @staticmethod
    def parse_member(member: str) -> tuple[str, str]:
        integration, _, connection_id = member.partition(":")
        return integration, connection_id

    @property
    def counters(self) -> str:
        """Hash of running totals (outcomes, latency buckets, alerts; the field families are
        listed in adapters/fleet_metrics.py), read by GET /metrics."""
        return f"{self.prefix}:counters"

    def refreshes_in_minute(self, minute: int) -> str:
        """Hash of one minute's refresh outcomes (minute: epoch seconds // 60), fields
        `{integration}:{outcome}`; written beside the counters, gone after
        REFRESH_HISTORY_TTL_SECONDS."""
        return f"{self.prefix}:refreshes-by-minute:{minute}"

    def dashboard_session(self, session_hash: str) -> str:
        """Hash of one dashboard login, under the SHA-256 of the cookie's session id (never
        the id, never the API key), gone after DASHBOARD_SESSION_TTL_SECONDS."""
        return f"{self.prefix}:dashboard-session:{session_hash}"

    # Alert delivery: one run at a time, dedup marks, delivered marks, the dead letters.
    @property
    def alerts_lock(self) -> str:
        return f"{self.prefix}:alerts:lock"

    def alert_sent(self, dedup_key: str) -> str:
        return f"{self.prefix}:alerts:sent:{dedup_key}"

    def alert_delivered(self, event_id: str, target: str) -> str:
        return f"{self.prefix}:alerts:delivered:{event_id}:{target}"

    def alert_incidents(self, dedup_key: str) -> str:
        """Set of the incidents a (connection, alert type) is part of: JSON [target, key]."""
        return f"{self.prefix}:alerts:incidents:{dedup_key}"

    def alert_incident_open(self, target: str, incident: str) -> str:
        """Set of the dedup keys of an incident's connections that have not cleared yet."""
        return f"{self.prefix}:alerts:incident-open:{target}:{incident}"

    def alert_incident_resolved(self, target: str, incident: str) -> str:
        return f"{self.prefix}:alerts:incident-resolved:{target}:{incident}"

    def dead_letter_claim(self, letter_id: str) -> str:
        return f"{self.prefix}:alerts:dead-claim:{letter_id}"

    @property
    def alerts_dead(self) -> str:
        return f"{self.prefix}:alerts:dead"

    def discovery(self, issuer: str) -> str:
        """Hash of the last good discovery document of an issuer (public metadata, kept
        without a TTL: it is what lets an integration start while its issuer is down)."""
        return f"{self.prefix}:discovery:{issuer}"

    @property
    def heartbeat(self) -> str:
        """Set by every refresh_due tick: readiness sees beat and a worker alive."""
        return f"{self.prefix}:heartbeat"

    def tick_tally(self, period_index: int) -> str:
        """Hash: what every process's refresh ticks did in one summary period (beat_quiet);
        kept two periods and a minute, so the next period's first tick can still read it."""
        return f"{self.prefix}:ticks:{period_index}"

    def tick_summary(self, period_index: int) -> str:
        """SET NX by the first tick of the next period: that one process logs the period's
        summary line, for the whole fleet. Same TTL as the tally."""
        return f"{self.prefix}:ticks:{period_index}:logged"

    def client_secret_expired(self, integration: str) -> str:
        """SET NX by the first refresh refused for an expired client secret: that one raises
        alert.client_secret_expired for the integration; a later successful refresh deletes
        it and says the secret works again (services/secret_expiry.py). Lives
        CLIENT_SECRET_EXPIRED_TTL_SECONDS."""
        return f"{self.prefix}:client-secret-expired:{integration}"

    def client_secret_probe(self, integration: str) -> str:
        """SET NX by beat while an integration's secret is refused as expired: the one
        connection it brings forward probes the provider. Lives
        SECRET_PROBE_INTERVAL_SECONDS (core/secret_expiry.py)."""
        return f"{self.prefix}:client-secret-probe:{integration}"

    def client_secret_expiring_open(self, integration: str) -> str:
        """Set when an alert.client_secret_expiring goes out; GETDEL by the first check that
        finds the date moved beyond the warnings (or removed), which resolves it. Lives until a
        day past the expiry warned about."""
        return f"{self.prefix}:client-secret-expiring-open:{integration}"

    def client_secret_expiring_sent(self, integration: str, expires_at: int, lead_days: int) -> str:
        """SET NX when alert.client_secret_expiring for this lead went out; the expiry time is
        part of the key, so a new date (a replaced secret) starts its leads afresh. Lives
        lead_days plus SECRET_EXPIRING_SENT_EXTRA_SECONDS."""
        return f"{self.prefix}:client-secret-expiring:{integration}:{expires_at}:{lead_days}"

    def events(self, shard: int) -> str:
        """A shard's event stream: the scripts that change a connection publish its events
        in the same step; readers merge the shards (adapters/event_consumer.py)."""
        return f"{self._tagged(shard)}:events"

    def event_dead_letters(self, shard: int, group: str) -> str:
        """The events `group` gave up on, from one shard's stream: in that shard's slot, so
        the copy and the XACK are one MULTI on a Cluster too (adapters/pending_events.py)."""
        return f"{self.events(shard)}:dead-letters:{group}"

    def event_shard(self, data: Mapping[str, object]) -> int:
        """The shard of an event: its connection's, so one connection's events stay in
        order; shard 0 for an event about no one connection."""
        integration, connection_id = data.get("integration"), data.get("connection_id")
        if isinstance(integration, str) and isinstance(connection_id, str):
            return self.shard(integration, connection_id)
        return 0
