"""The processes: `tokenlife up | run | worker | beat | api`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import click

from tokenlife.adapters.keys import Keys
from tokenlife.cli import service_output
from tokenlife.core.service_urls import redact_url
from tokenlife.errors import ConfigurationError, TokenlifeError
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings


@click.command()
@click.option("--host", default=None, help="Overrides TOKENLIFE_API_HOST.")
@click.option("--port", type=int, default=None, help="Overrides TOKENLIFE_API_PORT.")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API: /healthz, /readyz, /metrics, the token API for apps under
    /api/ (TOKENLIFE_API_KEYS), the connect flow (/connect, /oauth/callback) and the
    dashboard. Any number may run behind a load balancer."""
    from aiohttp import web

    from tokenlife.web.app import create_app
    from tokenlife.web.auth import parse_api_keys

    settings = service_output.service_settings()
    try:
        parse_api_keys(settings.api_keys)
    except ValueError as exc:
        service_output.refuse(f"TOKENLIFE_API_KEYS: {exc}")
    if not settings.api_keys:
        service_output.say(
            "no TOKENLIFE_API_KEYS: every /api/ request will be refused", logging.WARNING
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
        service_output.refuse(str(exc))


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--beat/--no-beat",
    default=True,
    help="Run Celery beat inside the worker (default). Use --no-beat when more than one "
    "worker runs and a separate `tokenlife beat` schedules them.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(beat: bool, celery_args: tuple[str, ...]) -> None:
    """Check the configuration, then run a Celery worker.

    Arguments after the options go to `celery worker` unchanged, e.g.
    `tokenlife worker --no-beat --concurrency 4 --hostname worker-a@%h`.
    Exits with 1 when the configuration is wrong."""
    _start_worker(beat, celery_args)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat alone: the clock that queues the refresh and alert ticks.

    Run exactly one per deployment, beside workers started with `--no-beat`; it uses the
    same schedule as a worker's embedded beat. Two beats do no harm to tokens (claims are
    atomic) but double the ticks. Arguments go to `celery beat` unchanged, e.g.
    `--schedule /var/lib/tokenlife/celerybeat-schedule`. Exits with 1 when the settings
    are wrong."""
    service_output.service_settings()
    from tokenlife import worker as worker_module

    if worker_module.settings_error is not None:
        service_output.refuse(str(worker_module.settings_error))
    code = worker_module.app.start(
        [*service_output.celery_quiet(), "beat", "--loglevel", "INFO", *celery_args]
    )
    sys.exit(code or 0)


@click.command()
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def up(celery_args: tuple[str, ...]) -> None:
    """Everything on one machine, for development: the API, and a worker with beat.

    What is not configured it provides: an embedded Redis (when TOKENLIFE_REDIS_URL is
    unset and none answers on 127.0.0.1:6379), an encryption key in .tokenlife/dev.key and
    an API key in .tokenlife/api.key (shown once, when made). It prints where the API,
    dashboard and metrics are. Arguments go to `celery worker`. This is what `make run`
    calls; in production run `worker --no-beat`, one `beat` and `api` instead."""
    _develop(celery_args, with_api=True)


@click.command()
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def run(celery_args: tuple[str, ...]) -> None:
    """Like `up` without the API: a worker with beat, and an embedded Redis and a
    development encryption key as needed. Arguments go to `celery worker`."""
    _develop(celery_args, with_api=False)


def _develop(celery_args: tuple[str, ...], *, with_api: bool) -> None:
    from tokenlife import development

    settings = service_output.service_settings()
    children: list[subprocess.Popen[bytes]] = []
    try:
        if "redis_url" not in settings.model_fields_set and not development.redis_answers():
            redis_process, url = development.start_embedded_redis()
            children.append(redis_process)
            os.environ["TOKENLIFE_REDIS_URL"] = url
            service_output.say(
                f"started an embedded Redis at {url} (data in {development.STATE_DIR}/)"
            )
        if not settings.encryption_keys:
            _development_encryption_key(settings)
        if with_api:
            _development_api_key(settings.api_keys)
            # Its own process: the API's event loop stays clear of Celery's.
            api_argv = [sys.executable, "-m", "tokenlife.cli", "api"]
            children.append(subprocess.Popen(api_argv))  # noqa: S603 - our own command
            base = development.local_url(settings.api_host, settings.api_port)
            service_output.say(
                f"API {base}/api/  dashboard {base}/dashboard  "
                f"metrics {base}/metrics  health {base}/healthz"
            )
    except (TokenlifeError, OSError) as exc:
        _stop(children)
        service_output.refuse(str(exc))
    try:
        schedule = str(development.STATE_DIR / "celerybeat-schedule")
        _start_worker(True, ("--schedule", schedule, *celery_args))
    finally:
        _stop(children)


def _development_encryption_key(settings: Settings) -> None:
    """The development key every entry point finds; a new one only while the Redis holds
    no connection under this prefix (a new key could never decrypt them)."""
    from tokenlife import development

    url = os.environ.get("TOKENLIFE_REDIS_URL", settings.redis_url)
    pattern = Keys(settings.key_prefix, settings.redis_shards).pattern("conn")
    if development.find_development_key() is None and development.holds_keys(url, pattern):
        raise ConfigurationError(
            f"TOKENLIFE_ENCRYPTION_KEYS is not set and no development key was found, but "
            f"{redact_url(url)} holds connections under the prefix {settings.key_prefix!r}: "
            "set TOKENLIFE_ENCRYPTION_KEYS to the key that encrypted them (a new key could "
            "not decrypt them), or run from the directory whose .tokenlife/dev.key did"
        )
    key, path, generated = development.development_key()
    os.environ["TOKENLIFE_ENCRYPTION_KEYS"] = key
    what = "generated a" if generated else "using the"
    service_output.say(
        f"{what} development encryption key in {path}; set TOKENLIFE_ENCRYPTION_KEYS in production."
    )


def _development_api_key(configured: tuple[str, ...]) -> None:
    """Without TOKENLIFE_API_KEYS the API refuses every /api/ call: on a developer's
    machine use (or make) `.tokenlife/api.key`, and show the key once, when made."""
    from tokenlife import development

    if configured:
        return
    key, generated = development.development_api_key()
    os.environ["TOKENLIFE_API_KEYS"] = key
    path = development.STATE_DIR / "api.key"
    if generated and service_output.json_logs():
        # A log line would redact the key, and a log shipper would keep it: the file has it.
        service_output.say(f"generated a development API key in {path} (mode 0600); send it "
                           "as `Authorization: Bearer <key>` to /api/ and paste it into the "
                           "dashboard's login")  # fmt: skip
    elif generated:
        click.echo(
            f"tokenlife: generated a development API key (kept in {path}, shown only now):\n"
            f"    {key}\n"
            "  send it as `Authorization: Bearer <key>` to /api/, and paste it into the "
            "dashboard's login; set TOKENLIFE_API_KEYS in production.",
            err=True,
        )
    else:
        service_output.say(f"using the development API key in {path}")


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

    service_output.service_settings()
    try:
        config = worker_module.configure()
    except TokenlifeError as exc:
        service_output.refuse(str(exc))
    names = ", ".join(sorted(config.integrations))
    service_output.say(
        f"integrations: {names}"
        if names
        else "no integrations configured; set TOKENLIFE_INTEGRATIONS_FILE",
        logging.INFO if names else logging.WARNING,
    )
    quiet = service_output.celery_quiet()
    argv = [*quiet, "worker", "--loglevel", "INFO", *(["--beat"] if beat else []), *celery_args]
    worker_module.app.worker_main(argv)
