"""`tokenlife providers ...` and `tokenlife integrations ...`."""

from __future__ import annotations

import json
import os
import sys
import time

import aiohttp
import click

from tokenlife.catalogue import format_details, preset_details, preset_summary
from tokenlife.cli import common
from tokenlife.core.preflight import Finding
from tokenlife.preflight import preflight


@click.group()
def providers() -> None:
    """The provider catalogue: what each vendor needs for a refresh token, with sources."""


@providers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_providers(as_json: bool) -> None:
    """One line per catalogued provider."""
    presets = common.presets()
    if as_json:
        click.echo(json.dumps([preset_summary(p) for p in presets.values()], indent=2))
        return
    for preset in presets.values():
        summary = preset_summary(preset)
        click.echo(
            f"{preset.name:14} {preset.title:44} refresh tokens: "
            f"{summary['issues_refresh_tokens']:12} rotation: {summary['rotates_refresh_tokens']}"
        )


@providers.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_provider(name: str, as_json: bool) -> None:
    """Everything the catalogue knows about one provider, with sources."""
    presets = common.presets()
    if name not in presets:
        raise click.ClickException(f"no provider {name!r}; see `tokenlife providers list`")
    data = preset_details(presets[name])
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(format_details(data))


@click.group()
def integrations() -> None:
    """Configured integrations."""


@integrations.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
def check_integrations(as_json: bool, strict: bool) -> None:
    """Preflight every integration; exit 1 when there is an error (with --strict, any
    finding)."""
    settings = common.settings()

    async def run() -> list[Finding]:
        async with aiohttp.ClientSession() as session:
            return await preflight(settings, common.presets(), os.environ, session, time.time())

    findings = common.run(run())
    errors = sum(f.severity == "error" for f in findings)
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        for f in findings:
            click.echo(
                f"{f.severity.upper():8} {f.integration}: {f.message}\n         fix: {f.fix}"
            )
        click.echo(f"{len(findings)} finding(s), {errors} error(s)")
    if errors or (strict and findings):
        sys.exit(1)
