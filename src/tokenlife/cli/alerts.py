"""`tokenlife alerts dead-letters list|replay`: the notifications no target accepted.
Exit codes: cli/common.py Exit, docs/cli.md#alerts."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from tokenlife.cli import common
from tokenlife.cli.common import Exit
from tokenlife.runtime import Runtime
from tokenlife.services import dead_letters
from tokenlife.services.dead_letters import DeadLetter, Replayed, ReplayResult


@click.group("alerts")
def alerts() -> None:
    """Alert delivery (docs/alerts.md)."""


@alerts.group("dead-letters")
def dead_letters_group() -> None:
    """Notifications a target refused after every retry ({prefix}:alerts:dead)."""


@dead_letters_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Show at most N, newest first.")  # fmt: skip
@common.JSON_OPTION
def list_dead_letters(limit: int, as_json: bool) -> None:
    """The dead letters, newest first: id, when, target, the alert and the error."""
    settings = common.settings()

    async def use(runtime: Runtime) -> list[DeadLetter]:
        return await dead_letters.newest(runtime.redis, runtime.keys, limit)

    letters = common.run(common.with_runtime(settings, use))
    if as_json:
        common.echo_json([letter.as_dict() for letter in letters])
        return
    if not letters:
        click.echo("No dead letters.", err=True)
    for letter in letters:
        click.echo(_line(letter))


@dead_letters_group.command("replay")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--force", is_flag=True,
              help="Send alerts whose incident was resolved since, too.")  # fmt: skip
@common.JSON_OPTION
def replay_dead_letters(ids: tuple[str, ...], replay_all: bool, force: bool, as_json: bool) -> None:
    """Send dead letters again to their targets, with the worker's retries.

    A dead letter goes once its target accepted it; one that fails again is dead-lettered
    anew (new id, the new error). An alert whose RESOLVED the target got since is skipped
    and kept (--force sends it); one another replay is sending is skipped. Exit 0 when
    every one was delivered or skipped, 3 when an ID does not exist (nothing is sent then),
    5 when one failed again, 1 when a target is no longer configured (that one stays)."""
    if bool(ids) == replay_all:
        raise click.UsageError("give dead-letter IDs or --all, not both")
    settings = common.settings()

    async def use(runtime: Runtime) -> list[ReplayResult]:
        if replay_all:
            letters = await dead_letters.everything(runtime.redis, runtime.keys)
        else:
            letters, missing = await dead_letters.by_ids(runtime.redis, runtime.keys, ids)
            if missing:
                raise common.Failure(f"no dead letter {', '.join(missing)}", Exit.NOT_FOUND)
        delivery = runtime.alert_delivery()
        return await dead_letters.replay(
            runtime.redis, runtime.keys, letters, delivery.resend, time.time(), force=force
        )

    results = common.run(common.with_runtime(settings, use))
    if as_json:
        common.echo_json([{"id": r.letter.id, "target": r.letter.target,
                           "outcome": r.outcome.value, "error": r.error, "new_id": r.new_id}
                          for r in results])  # fmt: skip
    else:
        if not results:
            click.echo("No dead letters.", err=True)
        for r in results:
            after = f": {r.error}" + (f" (now {r.new_id})" if r.new_id else "") if r.error else ""
            click.echo(f"{r.letter.id} {r.letter.target} {r.outcome.value}{after}")
    outcomes = {r.outcome for r in results}
    if Replayed.FAILED in outcomes:
        raise SystemExit(Exit.UNAVAILABLE)
    if Replayed.NO_TARGET in outcomes:
        raise SystemExit(Exit.ERROR)


def _line(letter: DeadLetter) -> str:
    when = datetime.fromtimestamp(letter.dead_lettered_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    payload = letter.payload
    what = (
        f"{payload.get('kind', '?')} {payload.get('type', '?')} "
        f"{payload.get('integration', '?')} ({payload.get('count', '?')} connections)"
    )
    return f"{letter.id}  {when} UTC  {letter.target}  {what}  error: {letter.error}"
