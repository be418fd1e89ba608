"""The `tokenlife` command: one module per group of subcommands."""

from __future__ import annotations

import sys

try:
    import click

    from tokenlife import logs
    from tokenlife.cli import alerts, catalogue, connections, demo, doctor, events, keys, services
except ModuleNotFoundError as missing:
    # `pip install tokenlife` is the HTTP client alone: one line saying what to install,
    # not a traceback. A module of tokenlife's own missing is a broken install: raise.
    if (missing.name or "tokenlife").partition(".")[0] == "tokenlife":
        raise
    sys.exit(
        f"tokenlife: the command needs the server extra, which is not installed (no module "
        f"named {missing.name!r}): pip install 'tokenlife[server]'"
    )


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
