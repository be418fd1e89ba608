"""The `tokenlife` command: one module per group of subcommands."""

from __future__ import annotations

import click

from tokenlife.cli import catalogue, connections, demo, doctor, events, keys, services


@click.group()
def main() -> None:
    """Keep OAuth 2.0 integrations authorized; alert when they won't stay so."""


for command in (
    services.up,
    services.run,
    services.worker,
    services.beat,
    services.api,
    connections.authorize_url,
    connections.connections,
    keys.keys,
    keys.generate_key,
    catalogue.providers,
    catalogue.integrations,
    events.events_group,
    doctor.doctor,
    demo.demo_provider,
):
    main.add_command(command)
