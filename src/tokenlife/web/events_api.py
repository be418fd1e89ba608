"""GET /api/events: tokenlife's events for apps behind the HTTP API, a page at a time, from a
position they keep (docs/api.md#events)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from tokenlife.adapters.event_consumer import StreamEntry
from tokenlife.adapters.redis_client import connect
from tokenlife.runtime import Runtime
from tokenlife.services.event_feed import EVENT_TYPES, Admits, EventFeed, parse_position
from tokenlife.services.event_watch import EventWatch, PageRequest, next_page
from tokenlife.web.auth import API_KEY, ApiKey
from tokenlife.web.problems import problem

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_WAIT_SECONDS = 30.0
# A long-poll ends this long before the request timeout (timeout_middleware), so it
# answers 200 with what it has, never 504.
WAIT_MARGIN_SECONDS = 5.0
_CONNECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class EventsEndpoint:
    feed: EventFeed
    watch: EventWatch
    shards: int
    wait_cap: float  # seconds


EVENTS = web.AppKey("events_endpoint", EventsEndpoint)


def setup_events_api(app: web.Application, runtime: Runtime) -> None:
    settings = runtime.config.settings
    feed = EventFeed(runtime.redis, runtime.keys, settings.events_max_length)
    # The watch's blocking read has a client of its own: without socket_timeout, as
    # tokenlife.events reads (a blocking read answers every BLOCK_MS anyway).
    open_client = partial(
        connect, settings.redis_url, socket_timeout=None,
        socket_connect_timeout=_CONNECT_TIMEOUT_SECONDS, socket_keepalive=True,
    )  # fmt: skip
    wait_cap = min(MAX_WAIT_SECONDS, settings.api_request_timeout_seconds - WAIT_MARGIN_SECONDS)
    app[EVENTS] = EventsEndpoint(
        feed=feed,
        watch=EventWatch(feed, runtime.keys, open_client),
        shards=runtime.keys.shards,
        wait_cap=max(0.0, wait_cap),
    )
    app.router.add_get("/api/events", list_events)
    app.on_shutdown.append(_close_watch)


async def _close_watch(app: web.Application) -> None:
    await app[EVENTS].watch.close()  # waiting requests answer now, not at shutdown's end


async def list_events(request: web.Request) -> web.Response:
    endpoint = request.app[EVENTS]
    query = request.query
    try:
        wanted = _page_request(query, request[API_KEY], endpoint)
    except _BadParameter as exc:
        return problem(400, "bad_request", f"{exc.name}: {exc.reason}", field=exc.name)
    if wanted.after == "":
        start, _ = await endpoint.feed.newest()
        wanted = dataclasses.replace(wanted, after=start, check_gap=False)
    page = await next_page(endpoint.feed, endpoint.watch, wanted)
    # A position that didn't move goes back as it came (a bare stream id stays bare).
    moved = page.next_after != wanted.after
    return web.json_response({
        "events": [_event_json(entry) for entry in page.events],
        "next_after": page.next_after if moved else query.get("after", page.next_after),
        "gap": page.gap,
    })  # fmt: skip


class _BadParameter(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _page_request(query: Any, key: ApiKey, endpoint: EventsEndpoint) -> PageRequest:
    """The request's parameters; `after` "" when it starts after the newest entry."""
    after = query.get("after")
    if after is None:
        position = ""
    else:
        try:
            position = parse_position(after, endpoint.shards)
        except ValueError as exc:
            raise _BadParameter("after", str(exc)) from None
    limit = _number(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, integer=True)
    wait = _number(query, "wait", 0, 0, MAX_WAIT_SECONDS, integer=False)
    types = _types(query.get("types"))
    return PageRequest(
        after=position,
        limit=int(limit),
        admits=admits(key, types),
        check_gap=position not in ("", "0"),
        wait=min(wait, endpoint.wait_cap),
        filtered=key.integrations is not None or bool(types),
    )


def _number(
    query: Any, name: str, default: float, low: float, high: float, *, integer: bool
) -> float:
    text = query.get(name)
    if text is None:
        return default
    kind = "an integer" if integer else "a number of seconds"
    wrong = _BadParameter(name, f"must be {kind} from {low:g} to {high:g}")
    # int() and float() also take spaces, "_" and non-ASCII digits: not in a URL of ours.
    if not text.isascii() or "_" in text or text != text.strip():
        raise wrong
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise wrong from None
    if not (math.isfinite(value) and low <= value <= high):
        raise wrong
    return value


def _types(text: str | None) -> tuple[str, ...]:
    """Event types, and prefixes ending in "." (`alert.`); each must name a type tokenlife
    emits, so a misspelt one is a 400 rather than a filter that never matches."""
    if text is None:
        return ()
    wanted = tuple(part.strip() for part in text.split(","))
    if not all(wanted):
        raise _BadParameter("types", "a comma-separated list of event types, none empty")
    for item in wanted:
        known = (
            any(t.startswith(item) for t in EVENT_TYPES)
            if item.endswith(".")
            else (item in EVENT_TYPES)
        )
        if not known:
            raise _BadParameter(
                "types", f"{item[:64]!r} is no event type (docs/events.md) nor a prefix of one"
            )
    return wanted


def admits(key: ApiKey, types: tuple[str, ...]) -> Admits:
    """What a page shows the key: events of an integration it may use (a key for every
    integration sees every event, those of no integration too), of the wanted types."""
    exact = frozenset(t for t in types if not t.endswith("."))
    prefixes = tuple(t for t in types if t.endswith("."))

    def admitted(entry: StreamEntry) -> bool:
        if key.integrations is not None:
            integration = entry.data.get("integration")
            if not isinstance(integration, str) or not key.allows(integration):
                return False
        return not types or entry.type in exact or entry.type.startswith(prefixes)

    return admitted


def _event_json(entry: StreamEntry) -> dict[str, Any]:
    return {
        "id": entry.entry_id,
        "type": entry.type,
        "occurred_at": entry.data.get("occurred_at"),
        "data": entry.data,
    }
