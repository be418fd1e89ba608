"""`tokenlife events tail | consume | dead-letters`."""

from __future__ import annotations

import importlib
import json
import os
import sys
from contextlib import aclosing, suppress
from dataclasses import asdict

import click

from tokenlife.cli import common, service_output
from tokenlife.errors import UsageError
from tokenlife.event_handlers import EventHandlers, Replayed, ReplayOutcome
from tokenlife.events import follow, summary_line


@click.group("events")
def events_group() -> None:
    """The event stream {prefix}:events (every type and field: docs/events.md)."""


@events_group.command("tail")
@click.option("--json", "as_json", is_flag=True, help="Print each entry as one line of JSON.")
@click.option(
    "--since",
    default="$",
    show_default=True,
    metavar="ID",
    help='Start after this entry id: "0" from the beginning, "$" only new events.',
)
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="PREFIX",
    help="Only events whose type starts with PREFIX, e.g. alert. (repeatable).",
)
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Stop after N events.")
def tail_events(as_json: bool, since: str, types: tuple[str, ...], count: int | None) -> None:
    """Follow the event stream, one line per event, until Ctrl-C (or --count events)."""
    settings = common.settings()

    async def run() -> None:
        shown = 0
        async with aclosing(follow(settings=settings, since=since, types=types)) as entries:
            async for entry in entries:
                if as_json:
                    entry_json = {"id": entry.entry_id, "type": entry.type, "data": entry.data}
                    click.echo(json.dumps(entry_json, separators=(",", ":")))
                else:
                    click.echo(summary_line(entry.type, entry.data))
                shown += 1
                if count is not None and shown >= count:
                    return

    # Ctrl-C is how a tail ends; asyncio.run has cancelled `run`, which closed the client.
    with suppress(KeyboardInterrupt):
        common.run(run())


@events_group.command("consume")
@click.argument("target", metavar="MODULE:ATTRIBUTE")
@click.option(
    "--consumer",
    metavar="NAME",
    help="This process's name in the group, the same across restarts (default: the host "
    "name; give each process on one host its own).",
)
@click.option(
    "--start",
    metavar="ID",
    help='Where a group created now begins: "$" new events, "0" every event kept, or an '
    "entry id (default: the EventHandlers' start).",
)
def consume_events(target: str, consumer: str | None, start: str | None) -> None:
    """Run an app's EventHandlers (e.g. myapp.events:handlers) until SIGTERM or Ctrl-C:
    the event in flight is finished and acknowledged first (a second signal stops at once)."""
    settings = service_output.service_settings()
    handlers = load_handlers(target)
    common.run(handlers.consume_until_signalled(consumer, settings=settings, start=start))


@events_group.group("dead-letters")
def dead_letters() -> None:
    """Events whose handler kept failing (EventHandlers' max_deliveries)."""


@dead_letters.command("list")
@click.argument("group")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
def list_dead_letters(group: str, limit: int, as_json: bool) -> None:
    """The dead letters of consumer group GROUP, newest first."""
    settings = common.settings()
    letters = common.run(EventHandlers(group).dead_letters(settings=settings, limit=limit))
    if as_json:
        click.echo(json.dumps([asdict(letter) for letter in letters]))
        return
    for letter in letters:
        where = f"{letter.data.get('integration', '-')}/{letter.data.get('connection_id', '-')}"
        click.echo(f"{letter.letter_id}  {letter.dead_lettered_at}  {letter.type}  {where}  "
                   f"deliveries={letter.deliveries}  {letter.handler}: {letter.error}")  # fmt: skip


@dead_letters.command("replay")
@click.argument("target", metavar="MODULE:ATTRIBUTE")
@click.argument("letter_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "every", is_flag=True, help="Replay every dead letter of the group.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the outcomes.")
def replay_dead_letters(target: str, letter_ids: tuple[str, ...], every: bool,
                        as_json: bool) -> None:  # fmt: skip
    """Hand dead letters to the handlers of MODULE:ATTRIBUTE again, in this process; one
    handled is removed, one that fails again stays. Exit 5 when one failed."""
    if every == bool(letter_ids):
        raise click.UsageError("give dead letter ids or --all, not both")
    settings = common.settings()
    handlers = load_handlers(target)

    async def replay() -> list[Replayed]:
        try:
            return await handlers.replay(None if every else letter_ids, settings=settings)
        except UsageError as exc:  # an id that is not there: nothing was replayed
            raise common.Failure(str(exc), common.Exit.NOT_FOUND) from None

    outcomes = common.run(replay())
    if as_json:
        click.echo(json.dumps([asdict(outcome) for outcome in outcomes]))
    else:
        for outcome in outcomes:
            error = f": {outcome.error}" if outcome.error else ""
            click.echo(f"{outcome.letter_id}  {outcome.type}  {outcome.outcome}{error}")
    if any(outcome.outcome is not ReplayOutcome.HANDLED for outcome in outcomes):
        raise SystemExit(int(common.Exit.UNAVAILABLE))


def load_handlers(target: str) -> EventHandlers:
    """The EventHandlers at MODULE:ATTRIBUTE, imported as `python -m` would from here."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.UsageError(f"{target!r} is not MODULE:ATTRIBUTE (e.g. myapp.events:handlers)")
    # The console script's path lacks the working directory that `python -m` and `celery -A`
    # put first; the app's modules live there.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise common.Failure(f"cannot import {module_name}: {exc}") from None
    handlers = getattr(module, attribute, None)
    if not isinstance(handlers, EventHandlers):
        raise click.UsageError(f"{target} is not a tokenlife.event_handlers.EventHandlers")
    return handlers
