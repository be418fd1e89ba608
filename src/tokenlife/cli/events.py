"""`tokenlife events tail`."""

from __future__ import annotations

import json
from contextlib import aclosing, suppress

import click

from tokenlife.cli import common
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
