"""`tokenlife demo-provider`: Google-like and Microsoft-like authorization servers on this
machine, for the README's five-minute walkthrough."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys

import click

DEFAULT_PORT = 8090


def _default_api_url() -> str:
    # Where `tokenlife api` listens unless told otherwise: its own settings' defaults.
    return f"http://127.0.0.1:{os.environ.get('TOKENLIFE_API_PORT', '8080')}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@click.command("demo-provider")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback needs --allow-remote.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="TOKENLIFE_DEMO_PORT",
    help="Port to listen on (or TOKENLIFE_DEMO_PORT).",
)
@click.option(
    "--api-url",
    default=None,
    metavar="URL",
    help="Where tokenlife's API is; its /oauth/callback is the one redirect URI "
    "the demo clients accept. Default: http://127.0.0.1:$TOKENLIFE_API_PORT "
    "(8080).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Listen on a non-loopback address: anyone who reaches it can get tokens.",
)
@click.option(
    "--print-integrations",
    is_flag=True,
    help="Print an integrations file for these providers and exit.",
)
def demo_provider(host: str, port: int, api_url: str | None, allow_remote: bool,
                  print_integrations: bool) -> None:  # fmt: skip
    """Serve a Google-like and a Microsoft-like authorization server, quirks included,
    with a consent page to click in a browser. Not a real provider: for trying tokenlife."""
    from aiohttp import web

    from tokenlife.demo.server import DemoSite

    if not _loopback(host) and not allow_remote:
        raise click.UsageError(f"--host {host} is not a loopback address; add --allow-remote")
    shown_host = f"[{host}]" if ":" in host else host
    site = DemoSite(base_url=f"http://{shown_host}:{port}", api_url=api_url or _default_api_url())
    if print_integrations:
        click.echo(site.integrations_toml(), nl=False)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s demo %(message)s", "%H:%M:%S"))
    demo_log = logging.getLogger("tokenlife.demo")
    demo_log.addHandler(handler)
    demo_log.setLevel(logging.INFO)
    click.echo(site.banner())
    try:
        web.run_app(site.app(), host=host, port=port, access_log=None,
                    print=lambda line: click.echo(f"tokenlife demo: {line}", err=True))  # fmt: skip
    except OSError as exc:  # the port is taken, most often
        raise click.ClickException(f"can't listen on {host}:{port}: {exc}") from None
