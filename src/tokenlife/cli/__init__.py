"""The `tokenlife` command: one module per group of subcommands."""

from __future__ import annotations

import click

from tokenlife import logs
from tokenlife.cli import catalogue, connections, events, keys, services


@click.group()
def main() -> None:
    """Keep OAuth 2.0 integrations authorized; alert when they won't stay so."""
    logs.configure_from_environment()  # docs/logging.md; `worker` and `api` raise the level


for command in (
    services.up,
    services.run,
    services.worker,
    services.api,
    connections.authorize_url,
    connections.connections,
    keys.keys,
    keys.generate_key,
    catalogue.providers,
    catalogue.integrations,
    events.events_group,
):
    main.add_command(command)
