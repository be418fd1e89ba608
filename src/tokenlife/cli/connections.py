"""`tokenlife connections ...` and `tokenlife authorize-url`."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from tokenlife.cli import common
from tokenlife.runtime import Runtime


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
    """Inspect stored connections (metadata only, never tokens)."""


@connections.command("show")
@click.argument("integration")
@click.argument("connection_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_connection(integration: str, connection_id: str, as_json: bool) -> None:
    """Show a connection's status, expiry and scopes."""
    settings = common.settings()

    async def use(runtime: Runtime) -> dict[str, Any]:
        connection = await runtime.exchange.connection(integration, connection_id)
        return connection.as_json()

    data = common.run(common.with_runtime(settings, use))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        shown = " ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:32} {shown if shown is not None else '-'}")
