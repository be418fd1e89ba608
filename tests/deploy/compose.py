"""Reading docker-compose.yml, .env files and the Dockerfile as Docker would, so tests can
check them and run the services as host processes (this machine has no Docker engine).

Only what our files use is implemented: interpolation (`$$`, `$VAR`, `${VAR}`, `${VAR:-d}`,
`${VAR-d}`, `${VAR:?e}`, `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`,
https://github.com/compose-spec/compose-spec/blob/main/12-interpolation.md), YAML merge
keys, profiles (15-profiles.md), and `KEY=VALUE` lines of an env file.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
SCHEMA = Path(__file__).with_name("compose-spec.json")

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


class InterpolationError(ValueError):
    """A `${VAR:?message}` whose variable is unset (or empty)."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["bare"] or match["name"]
        op, arg = match["op"], match["arg"] or ""
        current = variables.get(name)
        present = current is not None and (current != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return current if present and current is not None else arg
        if op in (":?", "?"):
            if not present or current is None:
                raise InterpolationError(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return arg if present else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def interpolate_all(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [interpolate_all(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_all(item, variables) for key, item in node.items()}
    return node


def load_raw(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The document as YAML gives it (merge keys applied), before interpolation."""
    return cast(dict[str, Any], yaml.safe_load(path.read_text()))


def load_schema() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(SCHEMA.read_text()))


def read_env_file(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines; comments and blank lines skipped (no quoting is used in ours)."""
    values = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition("=")
            values[key.strip()] = value.strip()
    return values


def readme_values(readme: Path = README) -> list[str]:
    """The values README.md's Deploy section says to fill in (`# fill in A, B and C`)."""
    section = readme.read_text().partition("## Deploy")[2].partition("\n## ")[0]
    match = re.search(r"# fill in (.+)", section)
    assert match, "README.md's Deploy section names no values to fill in"
    return re.findall(r"[A-Z][A-Z0-9_]+", match[1])


def commented_settings(text: str, about: str = "") -> dict[str, str]:
    """`# KEY=VALUE` lines: the optional settings an env file documents; with `about`,
    only those of the paragraph (blank-line separated) that mentions it."""
    paragraphs = [p for p in text.split("\n\n") if about in p]
    lines = "\n".join(paragraphs).splitlines()
    return read_env_file(
        "\n".join(line.lstrip("# ") for line in lines if re.match(r"#\s*[A-Z_]+=", line))
    )


def active_services(document: Mapping[str, Any], profiles: set[str]) -> dict[str, Any]:
    """Services with no `profiles`, and those naming an active profile."""
    services = cast(dict[str, Any], document["services"])
    return {
        name: service
        for name, service in services.items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.partition("=")[::2] for item in declared)
    return {key: "" if value is None else str(value) for key, value in declared.items()}


def dockerfile_stages(path: Path = DOCKERFILE) -> list[list[tuple[str, str]]]:
    """Each stage's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    lines = path.read_text().replace("\\\n", " ").splitlines()
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def exec_form(arguments: str) -> list[str]:
    """A JSON array instruction argument (`["tokenlife"]`), or a shell form split."""
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return shlex.split(arguments)
    return [str(item) for item in parsed]


def final_stage(instruction: str) -> list[str]:
    """The arguments of every `instruction` in the last stage."""
    return [args for name, args in dockerfile_stages()[-1] if name == instruction]
