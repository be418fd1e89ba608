"""`tokenlife keys ...`: the Fernet keys in TOKENLIFE_ENCRYPTION_KEYS."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet


@click.group()
def keys() -> None:
    """Encryption keys: the first in TOKENLIFE_ENCRYPTION_KEYS encrypts, all decrypt."""


@keys.command("generate")
def generate() -> None:
    """Print a new Fernet key for TOKENLIFE_ENCRYPTION_KEYS."""
    click.echo(Fernet.generate_key().decode("ascii"))


@click.command("generate-key", hidden=True)
def generate_key() -> None:
    """Print a new Fernet key (the older spelling of `keys generate`)."""
    click.echo(Fernet.generate_key().decode("ascii"))
