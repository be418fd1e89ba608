"""The `tokenlife` console script. `pip install tokenlife` is the HTTP client alone: there
the command says in one line which extra it needs and exits 1, rather than a traceback.
Importing `tokenlife.cli` itself raises ServerExtraMissingError, never exits: a tool that
imports every module (pkgutil.walk_packages, Sphinx autodoc) must live through it."""

from __future__ import annotations

import sys


class ServerExtraMissingError(ImportError):
    """Raised on importing `tokenlife.cli` where the `server` extra is not installed."""

    def __init__(self, missing: str | None) -> None:
        super().__init__(
            f"tokenlife: the command needs the server extra, which is not installed (no module "
            f"named {missing!r}): pip install 'tokenlife[server]'",
            name=missing,
        )


def main() -> None:
    try:
        from tokenlife.cli import main as command
    except ServerExtraMissingError as missing:
        sys.exit(str(missing))
    command()


if __name__ == "__main__":
    main()
