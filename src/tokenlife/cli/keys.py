"""`tokenlife keys ...`: the Fernet keys in TOKENLIFE_ENCRYPTION_KEYS, and re-encrypting
what is stored under the first of them (services/key_rotation.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
from cryptography.fernet import Fernet

from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import open_redis
from tokenlife.adapters.sealed_records import SealedRecords
from tokenlife.cli import common
from tokenlife.cli.common import Exit
from tokenlife.errors import ConfigurationError
from tokenlife.services.key_rotation import KeyCensus, KeyRing, KeyRotation
from tokenlife.settings import require_encryption_keys


@click.group()
def keys() -> None:
    """Encryption keys: the first in TOKENLIFE_ENCRYPTION_KEYS encrypts, all decrypt.

    To rotate: put a new key first (TOKENLIFE_ENCRYPTION_KEYS=new,old) in every process,
    restart them, run `tokenlife keys rotate`, and remove the old key once
    `tokenlife keys status` exits 0. Exit codes: 0 ok, 1 error, 2 usage, 5 Redis
    unavailable, 6 records still need a key other than the first."""


@keys.command("generate")
def generate() -> None:
    """Print a new Fernet key, for a new deployment or as the new first key of a rotation
    (never in place of a key that encrypts stored tokens: only that key decrypts them)."""
    click.echo(Fernet.generate_key().decode("ascii"))


@click.command("generate-key", hidden=True)
def generate_key() -> None:
    """Print a new Fernet key (the older spelling of `keys generate`)."""
    click.echo(Fernet.generate_key().decode("ascii"))


BATCH_OPTION = click.option(
    "--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True,
    metavar="N", help="Keys per SCAN step.",
)  # fmt: skip


@keys.command("status")
@BATCH_OPTION
@common.JSON_OPTION
def status(batch_size: int, as_json: bool) -> None:
    """Count stored records by the key they need, changing nothing. Exit 6 while some
    still need a key other than the first (removing it now would lose them)."""
    _walk(write=False, batch_size=batch_size, as_json=as_json)


@keys.command("rotate")
@BATCH_OPTION
@common.JSON_OPTION
def rotate(batch_size: int, as_json: bool) -> None:
    """Re-encrypt every stored secret under the first key, in batches, while workers run
    (a record is written only if unchanged since read, without taking a refresh's
    place). Interrupted? Run it again: records already under the first key are skipped.
    Reports what still needs an old key; exit 6 when anything does."""
    _walk(write=True, batch_size=batch_size, as_json=as_json)


def _walk(*, write: bool, batch_size: int, as_json: bool) -> None:
    settings = common.settings()
    try:
        key_list = require_encryption_keys(settings)
    except ConfigurationError as exc:  # no key set, no development key found
        raise common.Failure(str(exc)) from None
    interactive = sys.stderr.isatty() and not as_json

    async def use() -> KeyCensus:
        redis = open_redis(
            settings.redis_url, max_connections=4, wait_seconds=10,
            health_check_seconds=settings.redis_health_check_seconds,
            retries=settings.redis_retries,
        )  # fmt: skip
        try:
            records = SealedRecords(redis, Keys(settings.key_prefix, settings.redis_shards))
            rotation = KeyRotation(records, KeyRing(key_list), batch_size)
            if not interactive:
                return await rotation.run(write=write, progress=_lines())
            label = "re-encrypting" if write else "counting"
            with click.progressbar(
                length=await rotation.total(), label=label, file=sys.stderr
            ) as bar:
                return await rotation.run(write=write, progress=bar.update)
        finally:
            await redis.aclose()

    census = common.run(use())
    report = census.as_json(len(key_list))
    if as_json:
        common.echo_json(report)
    else:
        click.echo(f"{report['records']} record(s) hold encrypted secrets")
        for position, count in report["by_key"].items():  # type: ignore[attr-defined]
            what = " (encrypts)" if position == "1" else ""
            click.echo(f"  key #{position}{what}: {count}")
        if write:
            click.echo(f"re-encrypted now: {census.resealed}")
        click.echo(f"still need an old key: {census.on_old_keys}")
    if census.undecryptable:
        click.echo(
            f"warning: {census.undecryptable} record(s) decrypt with none of the configured "
            "keys; if a key was removed too early, put it back (last in the list)",
            err=True,
        )
    if census.unversioned:
        named = ", ".join(_connection_names(census.unversioned_keys, settings.key_prefix))
        click.echo(
            f"warning: {census.unversioned} connection record(s) have no version field "
            "(damaged or not written by tokenlife: no reader can use them, and they are "
            "never re-encrypted); delete each with `tokenlife connections delete "
            f"INTEGRATION CONNECTION_ID` and have its user connect again: {named}",
            err=True,
        )
    if census.on_old_keys:
        sys.exit(Exit.OLD_KEYS)


def _connection_names(redis_keys: list[str], prefix: str) -> list[str]:
    """INTEGRATION/CONNECTION_ID of the first few, for the commands that fix them."""
    keys = Keys(prefix)
    found = (keys.connection_named(k) for k in redis_keys)
    return [f"{n[0]}/{n[1]}" for n in found if n is not None]


def _lines() -> Callable[[int], None]:
    """Progress as plain lines on stderr, one per batch (not a TTY: a log reads it)."""
    seen = 0

    def report(count: int) -> None:
        nonlocal seen
        seen += count
        click.echo(f"tokenlife keys: {seen} record(s) done", err=True)

    return report
