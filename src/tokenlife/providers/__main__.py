"""Validate catalogue files: `python -m tokenlife.providers FILE...` (exit 1 on errors).

`python -m tokenlife.providers --update-docs docs/providers.md` rewrites that file's
providers table from the shipped catalogue.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from tokenlife.catalogue import providers_table, replace_table
from tokenlife.providers import load_preset_file, load_presets


def main(paths: list[str]) -> int:
    if paths[:1] == ["--update-docs"]:
        return update_docs(paths[1:])
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


def update_docs(paths: list[str]) -> int:
    if len(paths) != 1:
        print("usage: python -m tokenlife.providers --update-docs docs/providers.md")
        return 2
    path = Path(paths[0])
    try:
        text = replace_table(path.read_text("utf-8"), providers_table(load_presets()))
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}")
        return 1
    path.write_text(text, "utf-8")
    print(f"{path}: providers table rewritten ({len(load_presets())} providers)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
