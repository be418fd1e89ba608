"""`tokenlife connections ...` and `tokenlife authorize-url`. Metadata only: no command
prints a token value. Exit codes: cli/common.py Exit, docs/cli.md."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

import click

from tokenlife.adapters.key_layout import KeyLayout, Moved
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import connect
from tokenlife.adapters.status_counts import StatusCounts
from tokenlife.cli import common
from tokenlife.cli.common import Exit
from tokenlife.core.integration import check_connection_id
from tokenlife.core.policy import Status
from tokenlife.errors import UnknownIntegrationError
from tokenlife.runtime import Runtime
from tokenlife.services.connection_admin import list_connections
from tokenlife.services.refresh import Outcome

JSON_OPTION = common.JSON_OPTION


def _connection_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """The id rule the API and connect sessions apply (core.integration): a bad id is a
    usage error (exit 2), not a connection that doesn't exist."""
    try:
        return check_connection_id(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


CONNECTION_ID = click.argument("connection_id", callback=_connection_id)


def _known(runtime: Runtime, integration: str) -> None:
    """Metadata only: an integration whose discovery is still failing counts too."""
    registry = runtime.config.integrations
    if integration not in registry and integration not in registry.unavailable:
        raise UnknownIntegrationError(f"no integration named {integration!r}")


@click.command("authorize-url")
@click.argument("integration")
@click.argument("connection_id")
def authorize_url(integration: str, connection_id: str) -> None:
    """Print the provider URL to send a user to, for trusted scripts.

    It writes the pending authorization straight into Redis, so it needs the service's
    Redis access and encryption keys (the state lives 10 minutes, single-use) and the flow
    is not tied to a browser. Apps use connect sessions instead: POST /api/connect-sessions
    with an API key, then send the user to the one-time `url` it returns (docs/api.md)."""
    settings = common.settings()

    async def use(runtime: Runtime) -> str:
        request = await runtime.exchange.start_authorization(
            integration, connection_id, time.time()
        )
        return request.url

    click.echo(common.run(common.with_runtime(settings, use)))


@click.group()
def connections() -> None:
    """Stored connections: list, show, refresh now, delete, recount (metadata only, never
    tokens).

    Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 needs re-authorization,
    5 unavailable (Redis, the provider, a refresh in progress: try again)."""


@connections.command("list")
@click.option("--integration", metavar="NAME", help="Only this integration's connections.")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only this status.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="At most N.")
@JSON_OPTION
def list_command(
    integration: str | None, status: str | None, limit: int | None, as_json: bool
) -> None:
    """List connections of the configured integrations (status as readers see it: a
    lapsed token reads as degraded)."""
    settings = common.settings()

    async def use(runtime: Runtime) -> list[dict[str, Any]]:
        registry = runtime.config.integrations
        names = [*registry, *registry.unavailable]
        if integration is not None:
            _known(runtime, integration)
            names = [integration]
        wanted = None if status is None else Status(status)
        found = await list_connections(runtime.scan, names, time.time(), wanted)
        return [c.as_json() for c in found[:limit]]

    rows = common.run(common.with_runtime(settings, use))
    if as_json:
        common.echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['integration']:24} {row['connection_id']:32} {row['status']:26} "
            f"expires {row['expires_at'] or '-':22} next refresh {row['next_refresh_at'] or '-'}"
        )
    click.echo(f"{len(rows)} connection(s)", err=True)


@connections.command("show")
@click.argument("integration")
@CONNECTION_ID
@JSON_OPTION
def show_connection(integration: str, connection_id: str, as_json: bool) -> None:
    """Show a connection's status, expiry, scopes and last alert."""
    settings = common.settings()

    async def use(runtime: Runtime) -> dict[str, Any]:
        _known(runtime, integration)
        connection = await runtime.tokens.get(integration, connection_id)
        return connection.as_json()

    data = common.run(common.with_runtime(settings, use))
    if as_json:
        common.echo_json(data)
        return
    for key, value in data.items():
        shown = " ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:32} {shown if shown is not None else '-'}")


@connections.command("refresh")
@click.argument("integration")
@CONNECTION_ID
@JSON_OPTION
def refresh_connection(integration: str, connection_id: str, as_json: bool) -> None:
    """Refresh a connection now, due or not, in this process (it waits for a refresh the
    worker has in progress), and report the outcome. Exit 4 when the user has to connect
    again, 5 when the provider or Redis failed for now (the worker retries on schedule)."""
    settings = common.settings()

    async def use(runtime: Runtime) -> dict[str, Any]:
        result = await runtime.refresh_now.refresh(integration, connection_id)
        connection = await runtime.tokens.get(integration, connection_id)
        error = None if result.error is None else str(result.error)
        return {"outcome": result.outcome.value, "error": error,
                "connection": connection.as_json()}  # fmt: skip

    data = common.run(common.with_runtime(settings, use))
    outcome = Outcome(data["outcome"])
    code = {
        Outcome.REFRESHED: Exit.OK,
        Outcome.REAUTHORIZATION_REQUIRED: Exit.REAUTHORIZE,
    }.get(outcome, Exit.UNAVAILABLE)
    if as_json:
        common.echo_json(data)
    else:
        connection = data["connection"]
        click.echo(
            f"{outcome.value}: {integration}/{connection_id} status {connection['status']}, "
            f"expires {connection['expires_at'] or '-'}"
        )
        if data["error"]:
            click.echo(f"error: {data['error']}", err=True)
    sys.exit(code)


@connections.command("delete")
@click.argument("integration")
@CONNECTION_ID
@JSON_OPTION
def delete_connection(integration: str, connection_id: str, as_json: bool) -> None:
    """Revoke the grant at the provider (RFC 7009, when it has an endpoint) and delete the
    connection, as DELETE /api/connections/... does. Exit 0 once deleted, even when the
    revocation failed: the output says `revoked` and why not."""
    settings = common.settings()

    async def use(runtime: Runtime) -> dict[str, Any]:
        return await runtime.removal.delete(integration, connection_id, time.time())

    data = common.run(common.with_runtime(settings, use))
    if as_json:
        common.echo_json(data)
        return
    click.echo(f"deleted {integration}/{connection_id}; revoked: {str(data['revoked']).lower()}")
    if data["revocation_reason"]:
        click.echo(f"warning: {data['revocation_reason']}", err=True)


@connections.command("recount")
@JSON_OPTION
def recount_connections(as_json: bool) -> None:
    """Count the stored connections by integration and status afresh, for /metrics.

    The counts move with every status write; this repairs them (after a restore from a
    backup, or after a rollout during which older processes deleted connections). Writes
    during the walk are counted. Exit 5 while another recount runs."""
    settings = common.settings()

    async def use(runtime: Runtime) -> dict[str, int] | None:
        return await StatusCounts(runtime.redis, runtime.keys).recount(time.time())

    counted = common.run(common.with_runtime(settings, use))
    if counted is None:
        raise common.Failure(
            "another recount is running (or this one lost its flag): try again when it ends",
            Exit.UNAVAILABLE,
        )
    if as_json:
        common.echo_json(counted)
        return
    for field, count in sorted(counted.items()):
        integration, _, status = field.rpartition(":")
        click.echo(f"{integration:24} {status:26} {count}")
    click.echo(f"{sum(counted.values())} connection(s) counted", err=True)


@connections.command("reshard")
@click.option("--force", is_flag=True, help="Move even while beat's heartbeat is fresh.")
@JSON_OPTION
def reshard_connections(force: bool, as_json: bool) -> None:
    """Move every stored connection into the layout TOKENLIFE_REDIS_SHARDS names: from the
    layout before shards (tokenlife before 0.12), or from another shard count.

    Stop every worker, beat and API process first: a refresh writing meanwhile would be
    lost. Refuses (exit 5) while beat's heartbeat is fresh, unless --force. Safe to run
    again after a stop part-way. Events in the old streams are not moved: let alert
    delivery read them first."""
    settings = common.settings()

    async def use() -> Moved:
        redis = connect(settings.redis_url)
        keys = Keys(settings.key_prefix, settings.redis_shards)
        try:
            if not force and await redis.exists(keys.heartbeat):
                raise common.Failure(
                    "beat ticked within the last minute: stop every tokenlife process first "
                    "(or pass --force)",
                    Exit.UNAVAILABLE,
                )
            return await KeyLayout(redis, keys).reshard(time.time())
        finally:
            await redis.aclose()

    moved = common.run(use())
    if as_json:
        common.echo_json(asdict(moved))
        return
    where = ", ".join(moved.from_layouts) or "nowhere: nothing to move"
    click.echo(f"moved {moved.connections} connection(s) and {moved.pending} pending "
               f"authorization(s) from {where} into {settings.redis_shards} shards")  # fmt: skip
