"""The `tokenlife` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Coroutine
from contextlib import aclosing, suppress
from typing import Any, TypeVar

import aiohttp
import click
from cryptography.fernet import Fernet

from tokenlife.catalogue import format_details, preset_details, preset_summary
from tokenlife.core.preflight import Finding
from tokenlife.core.presets import Preset
from tokenlife.errors import TokenlifeError
from tokenlife.events import follow, summary_line
from tokenlife.preflight import preflight
from tokenlife.providers import load_presets
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings, load_settings

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except TokenlifeError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_runtime(settings: Settings, use: Any) -> Any:
    runtime = await Runtime.open(await load_config(settings))
    try:
        return await use(runtime)
    finally:
        await runtime.close()


def _settings() -> Settings:
    try:
        return load_settings()
    except TokenlifeError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Keep OAuth 2.0 integrations authorized; alert when they won't stay so."""


@main.command("generate-key")
def generate_key() -> None:
    """Print a new Fernet key for TOKENLIFE_ENCRYPTION_KEYS."""
    click.echo(Fernet.generate_key().decode("ascii"))


@main.command("authorize-url")
@click.argument("integration")
@click.argument("connection_id")
def authorize_url(integration: str, connection_id: str) -> None:
    """Print the provider URL to send a user to, for trusted scripts.

    It writes the pending authorization straight into Redis, so it needs the service's
    Redis access and encryption keys (the state lives 10 minutes, single-use) and the flow
    is not tied to a browser. Apps use connect sessions instead: POST /api/connect-sessions
    with an API key, then send the user to the one-time `url` it returns (docs/api.md)."""
    settings = _settings()

    async def use(runtime: Runtime) -> str:
        request = await runtime.exchange.start_authorization(
            integration, connection_id, time.time()
        )
        return request.url

    click.echo(_run(_with_runtime(settings, use)))


@main.group()
def connections() -> None:
    """Inspect stored connections (metadata only, never tokens)."""


@connections.command("show")
@click.argument("integration")
@click.argument("connection_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_connection(integration: str, connection_id: str, as_json: bool) -> None:
    """Show a connection's status, expiry and scopes."""
    settings = _settings()

    async def use(runtime: Runtime) -> dict[str, Any]:
        connection = await runtime.exchange.connection(integration, connection_id)
        return connection.as_json()

    data = _run(_with_runtime(settings, use))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        shown = " ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:32} {shown if shown is not None else '-'}")


@main.group()
def providers() -> None:
    """The provider catalogue: what each vendor needs for a refresh token, with sources."""


@providers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_providers(as_json: bool) -> None:
    """One line per catalogued provider."""
    presets = _presets()
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
    presets = _presets()
    if name not in presets:
        raise click.ClickException(f"no provider {name!r}; see `tokenlife providers list`")
    data = preset_details(presets[name])
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(format_details(data))


@main.group()
def integrations() -> None:
    """Configured integrations."""


@integrations.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_integrations(as_json: bool) -> None:
    """Preflight every integration; exit 1 when there is an error (warnings pass)."""
    settings = _settings()

    async def run() -> list[Finding]:
        async with aiohttp.ClientSession() as session:
            return await preflight(settings, _presets(), os.environ, session)

    findings = _run(run())
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        for f in findings:
            click.echo(
                f"{f.severity.upper():8} {f.integration}: {f.message}\n         fix: {f.fix}"
            )
        errors = sum(f.severity == "error" for f in findings)
        click.echo(f"{len(findings)} finding(s), {errors} error(s)")
    if any(f.severity == "error" for f in findings):
        sys.exit(1)


@main.group("events")
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
    settings = _settings()

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
        _run(run())


def _presets() -> dict[str, Preset]:
    try:
        return load_presets()
    except TokenlifeError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", default=None, help="Overrides TOKENLIFE_API_HOST.")
@click.option("--port", type=int, default=None, help="Overrides TOKENLIFE_API_PORT.")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (health, readiness, the token API for apps)."""
    from aiohttp import web

    from tokenlife.web.app import create_app
    from tokenlife.web.auth import parse_api_keys

    settings = _settings()
    try:
        parse_api_keys(settings.api_keys)
    except ValueError as exc:
        raise click.ClickException(f"TOKENLIFE_API_KEYS: {exc}") from None
    if not settings.api_keys:
        click.echo(
            "tokenlife: no TOKENLIFE_API_KEYS: every /api/ request will be refused", err=True
        )

    async def application() -> web.Application:
        runtime = await Runtime.open(await load_config(settings))
        app = create_app(runtime)

        async def close(_: web.Application) -> None:
            await runtime.close()

        app.on_cleanup.append(close)
        return app

    try:
        web.run_app(
            application(),
            host=host or settings.api_host,
            port=port or settings.api_port,
            access_log=None,
            print=lambda line: click.echo(f"tokenlife: {line}", err=True),
        )
    except TokenlifeError as exc:  # a configuration error: a message, not a traceback
        raise click.ClickException(str(exc)) from None


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--beat/--no-beat", default=True, help="Run Celery beat inside the worker.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(beat: bool, celery_args: tuple[str, ...]) -> None:
    """Check the configuration, then run a Celery worker (extra args go to Celery)."""
    _start_worker(beat, celery_args)


@main.command()
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def up(celery_args: tuple[str, ...]) -> None:
    """Everything on one machine: the API, and a worker with beat; an embedded Redis and a
    development key when none is configured. This is what `make run` calls."""
    _develop(celery_args, with_api=True)


@main.command()
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def run(celery_args: tuple[str, ...]) -> None:
    """Like `up` without the API: a worker with beat, embedded Redis and dev key as needed."""
    _develop(celery_args, with_api=False)


def _develop(celery_args: tuple[str, ...], *, with_api: bool) -> None:
    from tokenlife import development

    settings = _settings()
    children: list[subprocess.Popen[bytes]] = []
    try:
        if not settings.encryption_keys:
            key, generated = development.development_key()
            os.environ["TOKENLIFE_ENCRYPTION_KEYS"] = key
            what = "generated a new" if generated else "using the"
            click.echo(
                f"tokenlife: {what} development encryption key in "
                f"{development.STATE_DIR / 'dev.key'}; set TOKENLIFE_ENCRYPTION_KEYS in "
                "production.",
                err=True,
            )
        if "redis_url" not in settings.model_fields_set and not development.redis_answers():
            redis_process, url = development.start_embedded_redis()
            children.append(redis_process)
            os.environ["TOKENLIFE_REDIS_URL"] = url
            click.echo(
                f"tokenlife: started an embedded Redis at {url} (data in {development.STATE_DIR}/)",
                err=True,
            )
        if with_api:
            # Its own process: the API's event loop stays clear of Celery's.
            api_argv = [sys.executable, "-m", "tokenlife.cli", "api"]
            children.append(subprocess.Popen(api_argv))  # noqa: S603 - our own command
    except (TokenlifeError, OSError) as exc:
        _stop(children)
        raise click.ClickException(str(exc)) from None
    try:
        schedule = str(development.STATE_DIR / "celerybeat-schedule")
        _start_worker(True, ("--schedule", schedule, *celery_args))
    finally:
        _stop(children)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """The API first, Redis last; one that won't stop in 10 s is killed, and the rest
    are still stopped."""
    for child in reversed(children):
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _start_worker(beat: bool, celery_args: tuple[str, ...]) -> None:
    # Import late: the worker module reads the settings when imported, and `run` may
    # have just set them.
    from tokenlife import worker as worker_module

    try:
        config = worker_module.configure()
    except TokenlifeError as exc:
        click.echo(f"tokenlife: refusing to start: {exc}", err=True)
        sys.exit(2)
    names = ", ".join(sorted(config.integrations))
    click.echo(
        f"tokenlife: integrations: {names}"
        if names
        else "tokenlife: no integrations configured; set TOKENLIFE_INTEGRATIONS_FILE",
        err=True,
    )
    argv = ["worker", "--loglevel", "INFO", *(["--beat"] if beat else []), *celery_args]
    worker_module.app.worker_main(argv)


if __name__ == "__main__":
    main()
