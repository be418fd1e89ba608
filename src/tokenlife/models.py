"""What tokenlife answers an app, typed: the same classes from the HTTP clients
(`tokenlife.client`) and from the in-process `Tokenlife`, so code moves between them.

Standard library only: `tokenlife.client` imports this module, and an app that installs
`tokenlife[client]` has none of the worker's dependencies. Each `from_json` reads the HTTP
API's JSON (docs/api.md): a member it doesn't know is ignored (a newer server may add
some); a missing or mistyped member it needs raises ValueError, which never quotes a value
(a token answer holds a token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

__all__ = [
    "AccessToken",
    "Authorization",
    "ConnectSession",
    "Connection",
    "Deletion",
    "Event",
    "EventPage",
    "ExchangeResult",
    "Integration",
    "Readiness",
]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token valid for at least the server's leeway. `expires_at` is Unix time in
    seconds, None when the provider stated no lifetime."""

    access_token: str = field(repr=False)
    token_type: str
    expires_at: float | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AccessToken:
        expires_at = body.get("expires_at")
        return cls(
            access_token=_str(body, "access_token"),
            token_type=_str(body, "token_type"),
            expires_at=None if expires_at is None else _moment(body, "expires_at").timestamp(),
        )


@dataclass(frozen=True, slots=True)
class ConnectSession:
    """A one-time link for one user and one connection. Send the user's browser to `url`;
    it works once, until `expires_at`."""

    token: str = field(repr=False)
    url: str = field(repr=False)  # holds the token
    expires_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ConnectSession:
        return cls(
            token=_str(body, "token"),
            url=_str(body, "url"),
            expires_at=_moment(body, "expires_at"),
        )


@dataclass(frozen=True, slots=True)
class Authorization:
    """A started authorization whose callback your app receives (`Tokenlife.authorize`):
    send the browser to `url`. Keep `state` in this browser's session and accept a
    callback only with that state (RFC 6749 §10.12); it works once, until `expires_at`."""

    url: str = field(repr=False)  # holds the state
    state: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Integration:
    """An integration the API key may use: its name, provider preset and scopes."""

    name: str
    provider: str
    scopes: tuple[str, ...]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Integration:
        return cls(
            name=_str(body, "name"), provider=_str(body, "provider"), scopes=_strs(body, "scopes")
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A connection's metadata; never a token value. `status` is one of active, degraded,
    reauthorization_required (docs/api.md says what `status_reason` and `verdict` hold)."""

    integration: str
    connection_id: str
    provider: str
    status: str
    status_reason: str | None
    verdict: str
    token_type: str
    expires_at: datetime | None
    access_token_lifetime_seconds: int | None
    lifetime_source: str | None
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...] | None
    has_refresh_token: bool
    created_at: datetime
    updated_at: datetime
    version: int
    next_refresh_at: datetime | None
    last_refreshed_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    last_error: str | None
    last_alert: Mapping[str, Any] | None
    subject: str | None

    @property
    def needs_reauthorization(self) -> bool:
        return self.status == "reauthorization_required"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Connection:
        granted = body.get("scopes_granted")
        alert = body.get("last_alert")
        if alert is not None and not isinstance(alert, Mapping):
            raise ValueError("last_alert is not an object")
        return cls(
            integration=_str(body, "integration"),
            connection_id=_str(body, "connection_id"),
            provider=_str(body, "provider"),
            status=_str(body, "status"),
            status_reason=_optional_str(body, "status_reason"),
            verdict=_str(body, "verdict"),
            token_type=_str(body, "token_type"),
            expires_at=_optional_moment(body, "expires_at"),
            access_token_lifetime_seconds=_optional_int(body, "access_token_lifetime_seconds"),
            lifetime_source=_optional_str(body, "lifetime_source"),
            scopes_requested=_strs(body, "scopes_requested"),
            scopes_granted=None if granted is None else _strs(body, "scopes_granted"),
            has_refresh_token=_bool(body, "has_refresh_token"),
            created_at=_moment(body, "created_at"),
            updated_at=_moment(body, "updated_at"),
            version=_int(body, "version"),
            next_refresh_at=_optional_moment(body, "next_refresh_at"),
            last_refreshed_at=_optional_moment(body, "last_refreshed_at"),
            consecutive_failures=_int(body, "consecutive_failures"),
            failing_since=_optional_moment(body, "failing_since"),
            last_error=_optional_str(body, "last_error"),
            last_alert=None if alert is None else ReadOnlyDict(alert),
            subject=_optional_str(body, "subject"),
        )


@dataclass(frozen=True, slots=True)
class Deletion:
    """What deleting a connection did: `revoked` only when the provider accepted the
    revocation; otherwise `revocation_reason` says why."""

    deleted: bool
    revoked: bool
    revocation_supported: bool
    revocation_reason: str | None
    revocation_error: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Deletion:
        return cls(
            deleted=_bool(body, "deleted"),
            revoked=_bool(body, "revoked"),
            revocation_supported=_bool(body, "revocation_supported"),
            revocation_reason=_optional_str(body, "revocation_reason"),
            revocation_error=_optional_str(body, "revocation_error"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One event of docs/events.md. `id` is its position: pass it back as `after` to resume
    past it (`<stream id>/<shard>`, docs/cluster.md)."""

    id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]

    @property
    def integration(self) -> str | None:
        value = self.data.get("integration")
        return value if isinstance(value, str) else None

    @property
    def connection_id(self) -> str | None:
        value = self.data.get("connection_id")
        return value if isinstance(value, str) else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Event:
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise ValueError("data is not an object")
        return cls(
            id=_str(body, "id"),
            type=_str(body, "type"),
            occurred_at=_moment(body, "occurred_at"),
            data=ReadOnlyDict(data),
        )


@dataclass(frozen=True, slots=True)
class EventPage:
    """One answer of GET /api/events: the events after a position, oldest first, and
    `next_after`, the position to pass back as `after` to read on with nothing skipped (it
    moves past events the key may not see, so it may be ahead of the last event's id).
    `gap` is true when events after the position asked for were trimmed before they could
    be read (TOKENLIFE_EVENTS_MAX_LENGTH): the page starts at the oldest event kept."""

    events: tuple[Event, ...]
    next_after: str
    gap: bool = False

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EventPage:
        events = body.get("events")
        if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
            raise ValueError("events is missing or not a list of objects")
        return cls(
            events=tuple(Event.from_json(event) for event in events),
            next_after=_str(body, "next_after"),
            gap=False if body.get("gap") is None else _bool(body, "gap"),
        )


@dataclass(frozen=True, slots=True)
class Readiness:
    """GET /readyz: `ready` when Redis answers and a refresh tick ran lately (beat and a
    worker are alive). `integrations_unavailable` lists the integrations whose OIDC
    discovery has not succeeded yet; they don't make the service unready."""

    ready: bool
    redis: bool
    beat: bool
    beat_last_tick_seconds_ago: float | None
    integrations_unavailable: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Readiness:
        age = body.get("beat_last_tick_seconds_ago")
        if age is not None and (not isinstance(age, int | float) or isinstance(age, bool)):
            raise ValueError("beat_last_tick_seconds_ago is not a number")
        unavailable = body.get("integrations_unavailable", [])
        if not isinstance(unavailable, list) or not all(
            isinstance(entry, Mapping) for entry in unavailable
        ):
            raise ValueError("integrations_unavailable is not a list of objects")
        return cls(
            ready=_bool(body, "ready"),
            redis=_bool(body, "redis"),
            beat=_bool(body, "beat"),
            beat_last_tick_seconds_ago=None if age is None else float(age),
            integrations_unavailable=tuple(ReadOnlyDict(e) for e in unavailable),
        )


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    """What an exchange ended in: the summary the worker's `tokenlife.exchange_code` task
    returns, typed; never a token value. `outcome` is the verdict (refreshable, long_lived,
    refresh_token_missing, lifetime_unknown) or `failed`, and then `error` says why and
    `fixes` / `diagnosis` what to change; from the in-process library also `in_progress`:
    another attempt is still exchanging this state, ask again for its outcome."""

    integration: str | None
    connection_id: str | None
    outcome: str
    status: str | None
    expires_at: datetime | None
    refresh_token_received: bool
    error: str | None
    error_description: str | None
    return_to: str | None = field(repr=False)  # the app's own URL, maybe with its ids
    fixes: tuple[str, ...]
    diagnosis: tuple[Mapping[str, Any], ...]

    @property
    def ok(self) -> bool:
        """A connection is stored (possibly `degraded`: see `fixes`)."""
        return self.outcome not in ("failed", "in_progress")

    @property
    def final(self) -> bool:
        """The exchange has ended (`in_progress`: not yet, ask again with the same state)."""
        return self.outcome != "in_progress"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ExchangeResult:
        diagnosis = body.get("diagnosis") or []
        if not isinstance(diagnosis, list) or not all(isinstance(d, Mapping) for d in diagnosis):
            raise ValueError("diagnosis is not a list of objects")
        return cls(
            integration=_optional_str(body, "integration"),
            connection_id=_optional_str(body, "connection_id"),
            outcome=_str(body, "outcome"),
            status=_optional_str(body, "status"),
            expires_at=_optional_moment(body, "expires_at"),
            refresh_token_received=bool(body.get("refresh_token_received")),
            error=_optional_str(body, "error"),
            error_description=_optional_str(body, "error_description"),
            return_to=_optional_str(body, "return_to"),
            fixes=_strs(body, "fixes") if body.get("fixes") is not None else (),
            diagnosis=tuple(ReadOnlyDict(d) for d in diagnosis),
        )


class ReadOnlyDict(dict[str, Any]):
    """An object of the API's JSON inside a result (`Event.data`, `Connection.last_alert`,
    ...): a dict that refuses changes, one level deep as the results are frozen.

    A dict rather than a `MappingProxyType`, which can't be pickled, copied or hashed:
    results go into Celery results, caches and `multiprocessing`, through
    `dataclasses.asdict`, `json.dumps` and FastAPI's `jsonable_encoder`, all of which
    take a dict (a subclass too) as it is. It hashes by its keys only, so equal dicts hash
    equal whatever their values (lists, nested objects) hold."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's own pickling fills the new object item by item, which __setitem__ refuses.
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self))

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only: a result, not a record to edit")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


# Readers of one member each. Their errors name the member, never its value.


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} is missing or not a string")
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    return None if body.get(name) is None else _str(body, name)


def _int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} is missing or not an integer")
    return value


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    return None if body.get(name) is None else _int(body, name)


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise ValueError(f"{name} is missing or not a boolean")
    return value


def _strs(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} is missing or not a list of strings")
    return tuple(value)


def _moment(body: Mapping[str, Any], name: str) -> datetime:
    """An API timestamp: ISO 8601 with its zone (the API always says UTC); never read one
    without a zone as local time."""
    value = _str(body, name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} has no time zone")
    return moment


def _optional_moment(body: Mapping[str, Any], name: str) -> datetime | None:
    return None if body.get(name) is None else _moment(body, name)
