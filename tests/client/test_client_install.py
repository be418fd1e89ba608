"""`pip install 'tokenlife[client]'` into a fresh venv, from the wheel this checkout
builds: only httpx and what httpx needs come in, the client imports and answers against a
running `tokenlife api`, and the `tokenlife` command names the extra it lacks. Slow, and it
needs the package index (pip fetches setuptools for the build and httpx for the install):
`make test-client-install` runs it, `make test` leaves it out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.api_process import FULL, running_api
from tokenlife.settings import Settings

pytestmark = [pytest.mark.install, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SERVER_DISTRIBUTIONS = {
    "aiohttp", "celery", "kombu", "redis", "hiredis", "uvloop", "pydantic", "pydantic-settings",
    "cryptography", "click", "apprise", "prometheus-client", "structlog",
}  # fmt: skip


def isolated() -> dict[str, str]:
    """This run's environment without PYTHONPATH, which points at the checkout's src/ and
    would hide the installed wheel."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=isolated(), check=check
    )


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    place = tmp_path_factory.mktemp("client-install")
    # What the Dockerfile copies: a build writes build/ and *.egg-info beside its sources,
    # so two test processes building in the checkout at once would trip over each other.
    source, dist = place / "source", place / "dist"
    skipped = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=skipped)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source)
    (wheel,) = dist.glob("tokenlife-*.whl")
    venv.create(place / "venv", with_pip=True)
    interpreter = place / "venv" / "bin" / "python"
    run(interpreter, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"tokenlife[client] @ {wheel.as_uri()}")  # fmt: skip
    yield interpreter


def installed(python: Path) -> dict[str, list[str]]:
    """Every distribution in the venv, with the names its requirements (without extras
    and markers that don't apply) name."""
    code = (
        "import json, re\n"
        "from importlib.metadata import distributions\n"
        "found = {}\n"
        "for d in distributions():\n"
        "    needs = [r for r in (d.requires or []) if 'extra ==' not in r]\n"
        "    found[re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()] = [\n"
        "        re.sub(r'[-_.]+', '-', re.match(r'[A-Za-z0-9._-]+', r).group()).lower()\n"
        "        for r in needs]\n"
        "print(json.dumps(found))\n"
    )
    return dict(json.loads(run(python, "-c", code).stdout))


def test_only_httpx_and_what_it_needs_come_in(python: Path) -> None:
    found = installed(python)
    assert not SERVER_DISTRIBUTIONS & set(found), SERVER_DISTRIBUTIONS & set(found)
    assert found["tokenlife"] == ["httpx"]
    closure, todo = set(), ["httpx"]
    while todo:
        name = todo.pop()
        if name in closure or name not in found:
            continue  # a requirement whose marker doesn't apply here is not installed
        closure.add(name)
        todo.extend(found[name])
    # pip and setuptools are the venv's own.
    assert set(found) - closure - {"tokenlife", "pip", "setuptools"} == set()
    print("installed:", sorted(found))


def test_the_client_answers_against_a_running_api(
    python: Path, settings: Settings, tmp_path: Path
) -> None:
    code = (
        "import asyncio, sys\n"
        "from tokenlife.client import AsyncClient, Client\n"
        "base, key = sys.argv[1:]\n"
        "with Client(base, key) as client:\n"
        "    print(sorted(i.name for i in client.integrations())[:2])\n"
        "    print(client.ready().redis)\n"
        "async def main():\n"
        "    async with AsyncClient(base, key) as client:\n"
        "        print(len(await client.integrations()) > 2)\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('celery', 'redis', 'aiohttp', 'pydantic') if m in sys.modules))\n"
    )
    with running_api(settings, tmp_path) as base:
        ran = run(python, "-c", code, base, FULL, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["['generic', 'generic-7d']", "True", "True", "[]"]


def test_the_command_says_which_extra_it_needs(python: Path) -> None:
    needs = (
        "tokenlife: the command needs the server extra, which is not installed (no module "
        "named 'click'): pip install 'tokenlife[server]'"
    )
    ran = run(python.parent / "tokenlife", "--help", check=False)  # the console script
    assert ran.returncode == 1
    assert ran.stderr.splitlines() == [needs]
    # Importing tokenlife.cli (python -m does) raises, never exits: tools that import
    # every module (pkgutil.walk_packages, autodoc) live through it.
    ran = run(python, "-m", "tokenlife.cli", check=False)
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-1] == f"tokenlife._command.ServerExtraMissingError: {needs}"
