"""Every request the clients make and how its answer is read, free of I/O: `Client` and
`AsyncClient` differ only in how they send a `Call`, so they can't drift apart."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from tokenlife.client.problems import error_for
from tokenlife.errors import TokenlifeError, UsageError
from tokenlife.models import (
    AccessToken,
    Connection,
    ConnectSession,
    Deletion,
    EventPage,
    Integration,
    Readiness,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request: where it goes, what it carries, which statuses answer it and how its
    JSON body becomes the result. `holds` is how long the server may hold it before
    answering (a long poll), added to the read timeout."""

    method: str
    path: str  # quoted, appended to the base URL
    read: Callable[[Mapping[str, Any]], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    expect: frozenset[int] = frozenset({200})
    integration: str | None = None
    connection_id: str | None = None
    holds: float = 0.0
    authorized: bool = True

    def answer(self, status: int, headers: Mapping[str, str], content: bytes, now: float) -> T:
        """The result, or the error the answer says (problems.error_for)."""
        try:
            body = json.loads(content) if content else None
        except ValueError:  # UnicodeDecodeError is one
            body = None
        if status not in self.expect:
            raise self._error(status, body, headers, now)
        try:
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            return self.read(body)
        except (ValueError, TypeError, KeyError) as exc:
            if status >= 400:  # e.g. a proxy's 503 where /readyz's own was expected
                raise self._error(status, body, headers, now) from None
            # The readers name members, never values: a token answer holds a token.
            raise TokenlifeError(
                f"{self.method} {self.path}: HTTP {status} with an unexpected body: {exc}"
            ) from None

    def _error(
        self, status: int, body: Any, headers: Mapping[str, str], now: float
    ) -> TokenlifeError:
        return error_for(
            status, body, headers,
            integration=self.integration, connection_id=self.connection_id, now=now,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ConnectionPage:
    connections: tuple[Connection, ...]
    next_cursor: str | None


def integrations() -> Call[list[Integration]]:
    return Call("GET", "/api/integrations", _integrations)


def connection_page(
    integration: str | None, status: str | None, limit: int, cursor: str | None
) -> Call[ConnectionPage]:
    params = {"limit": str(limit)}
    if integration is not None:
        params["integration"] = integration
    if status is not None:
        params["status"] = status
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/api/connections", _connection_page, params, integration=integration)


def connection(integration: str, connection_id: str) -> Call[Connection]:
    return Call("GET", _path(integration, connection_id), Connection.from_json,
                integration=integration, connection_id=connection_id)  # fmt: skip


def access_token(integration: str, connection_id: str) -> Call[AccessToken]:
    return Call("POST", _path(integration, connection_id, "token"), AccessToken.from_json,
                integration=integration, connection_id=connection_id)  # fmt: skip


def refresh(integration: str, connection_id: str) -> Call[None]:
    return Call("POST", _path(integration, connection_id, "refresh"), _nothing,
                expect=frozenset({202}), integration=integration,
                connection_id=connection_id)  # fmt: skip


def delete(integration: str, connection_id: str) -> Call[Deletion]:
    return Call("DELETE", _path(integration, connection_id), Deletion.from_json,
                integration=integration, connection_id=connection_id)  # fmt: skip


def create_connect_session(
    integration: str,
    connection_id: str,
    return_to: str | None,
    end_user: Mapping[str, str] | None,
) -> Call[ConnectSession]:
    body: dict[str, Any] = {"integration": integration, "connection_id": connection_id}
    if return_to is not None:
        body["return_to"] = return_to
    if end_user is not None:
        body["end_user"] = dict(end_user)
    return Call("POST", "/api/connect-sessions", ConnectSession.from_json, body=body,
                expect=frozenset({201}), integration=integration,
                connection_id=connection_id)  # fmt: skip


def ready() -> Call[Readiness]:
    # A service that is not ready answers 503 with the same body, saying which check failed.
    return Call("GET", "/readyz", Readiness.from_json, expect=frozenset({200, 503}),
                authorized=False)  # fmt: skip


def events(
    after: str | None, limit: int | None, wait: float, types: Iterable[str] | str | None
) -> Call[EventPage]:
    # The server's bound (docs/api.md); NaN or infinity would be sent as "nan", "inf".
    if not (isinstance(wait, int | float) and math.isfinite(wait) and 0 <= wait <= 30):
        raise UsageError("wait must be 0 to 30 seconds")
    params: dict[str, str] = {}
    if after is not None:
        params["after"] = after
    if limit is not None:
        params["limit"] = str(limit)
    if wait:
        params["wait"] = f"{wait:g}"
    # One type given as a string is one type, not its letters; no type at all is every
    # type, as None is (the API would read `types=` as none).
    names = [types] if isinstance(types, str) else list(types or ())
    if names:
        params["types"] = ",".join(names)
    return Call("GET", "/api/events", EventPage.from_json, params, holds=wait)


def _integrations(body: Mapping[str, Any]) -> list[Integration]:
    return [Integration.from_json(item) for item in _objects(body, "integrations")]


def _connection_page(body: Mapping[str, Any]) -> ConnectionPage:
    cursor = body.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ValueError("next_cursor is not a string")
    connections = tuple(Connection.from_json(item) for item in _objects(body, "connections"))
    return ConnectionPage(connections, cursor)


def _nothing(body: Mapping[str, Any]) -> None:
    return None


def _objects(body: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    items = body.get(name)
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{name} is missing or not a list of objects")
    return items


def _path(integration: str, connection_id: str, action: str | None = None) -> str:
    # Quoted whole: a connection id may hold "/", "?", "#" or "+".
    path = f"/api/connections/{quote(integration, safe='')}/{quote(connection_id, safe='')}"
    return path if action is None else f"{path}/{action}"
