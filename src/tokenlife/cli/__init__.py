"""The `tokenlife` command: one module per group of subcommands. The console script is
`tokenlife._command:main`, which says in one line what is missing where this import fails."""

from __future__ import annotations

from tokenlife._command import ServerExtraMissingError

try:
    import click

    from tokenlife import logs
    from tokenlife.cli import alerts, catalogue, connections, demo, doctor, events, keys, services
except ModuleNotFoundError as missing:
    # `pip install tokenlife` is the HTTP client alone: say what to install. A module of
    # tokenlife's own missing is a broken install: raise it as it is.
    if (missing.name or "tokenlife").partition(".")[0] == "tokenlife":
        raise
    raise ServerExtraMissingError(missing.name) from missing


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenlife", message="tokenlife %(version)s")
def main() -> None:
    """Keep OAuth 2.0 integrations authorized; alert when they won't stay so.

    Exit codes every command keeps (docs/cli.md): 0 ok, 1 error, 2 usage, 3 not found,
    4 needs re-authorization, 5 unavailable (try again), 6 records still need an old key."""
    logs.configure_from_environment()  # docs/logging.md; `worker` and `api` raise the level


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
    alerts.alerts,
    doctor.doctor,
    demo.demo_provider,
):
    main.add_command(command)
