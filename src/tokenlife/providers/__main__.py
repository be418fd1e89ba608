"""Validate catalogue files: `python -m tokenlife.providers FILE...` (exit 1 on errors)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from tokenlife.providers import load_preset_file


def main(paths: list[str]) -> int:
    failed = 0
    for name in paths:
        try:
            preset = load_preset_file(Path(name))
        except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
            print(f"{name}: {exc}")
            failed += 1
        else:
            print(
                f"{name}: ok ({preset.name}, {len(preset.requires)} requirement(s), "
                f"{len(preset.facts.quirks)} quirk(s))"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
