"""The processes: `tokenlife up | run | worker | api`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import click

from tokenlife import logs
from tokenlife.cli import common
from tokenlife.errors import TokenlifeError
from tokenlife.runtime import Runtime, load_config


@click.command()
@click.option("--host", default=None, help="Overrides TOKENLIFE_API_HOST.")
@click.option("--port", type=int, default=None, help="Overrides TOKENLIFE_API_PORT.")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (health, readiness, the token API for apps)."""
    from aiohttp import web

    from tokenlife.web.app import create_app
    from tokenlife.web.auth import parse_api_keys

    settings = common.settings()
    logs.configure(level=settings.log_level or "INFO", fmt=settings.log_format)
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
            # aiohttp's start-up lines go out as log lines, in the log format.
            print=logging.getLogger("tokenlife.api").info,
        )
    except TokenlifeError as exc:  # a configuration error: a message, not a traceback
        raise click.ClickException(str(exc)) from None


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--beat/--no-beat", default=True, help="Run Celery beat inside the worker.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(beat: bool, celery_args: tuple[str, ...]) -> None:
    """Check the configuration, then run a Celery worker (extra args go to Celery)."""
    _start_worker(beat, celery_args)


@click.command()
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def up(celery_args: tuple[str, ...]) -> None:
    """Everything on one machine: the API, and a worker with beat; an embedded Redis and a
    development key when none is configured. This is what `make run` calls."""
    _develop(celery_args, with_api=True)


@click.command()
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def run(celery_args: tuple[str, ...]) -> None:
    """Like `up` without the API: a worker with beat, embedded Redis and dev key as needed."""
    _develop(celery_args, with_api=False)


def _develop(celery_args: tuple[str, ...], *, with_api: bool) -> None:
    from tokenlife import development

    settings = common.settings()
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
