"""The provider catalogue: one TOML file per provider, shipped in the package."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path

from tokenlife.core.presets import Preset, preset_from_mapping
from tokenlife.errors import ConfigurationError


def load_preset_file(path: Path) -> Preset:
    """One catalogue file, validated; ValueError or TOMLDecodeError say what is wrong."""
    return preset_from_mapping(tomllib.loads(path.read_text("utf-8")))


@cache
def load_presets() -> dict[str, Preset]:
    """Read and validate every `providers/*.toml`; a broken file stops start-up."""
    presets: dict[str, Preset] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        try:
            preset = preset_from_mapping(tomllib.loads(entry.read_text("utf-8")))
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise ConfigurationError(f"provider catalogue {entry.name}: {exc}") from exc
        presets[preset.name] = preset
    return presets
