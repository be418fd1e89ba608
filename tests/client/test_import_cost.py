"""`import tokenlife.client` loads httpx and tokenlife's own stdlib-only modules, nothing
of the worker: checked in fresh interpreters, as an app would import it. The time it takes
is measured by `python -m tests.client.import_cost` (docs/client.md), not asserted here:
a bound on milliseconds would fail on a busy machine, not on a change."""

from __future__ import annotations

import subprocess
import sys

from tests.client.import_cost import SERVER_MODULES, beyond_httpx, modules_loaded_by


def test_the_client_loads_none_of_the_servers_dependencies() -> None:
    loaded = {name.partition(".")[0] for name in modules_loaded_by("tokenlife.client")}
    assert "httpx" in loaded
    assert not loaded & set(SERVER_MODULES), loaded & set(SERVER_MODULES)


def test_the_client_adds_nothing_to_httpx_but_tokenlife_itself() -> None:
    assert beyond_httpx() == {"tokenlife"}


def test_the_package_and_its_errors_and_models_need_no_dependency_at_all() -> None:
    for module in ("tokenlife", "tokenlife.errors", "tokenlife.models"):
        outside = {name.partition(".")[0] for name in modules_loaded_by(module)}
        assert outside - set(sys.stdlib_module_names) == {"tokenlife"}, module


def test_the_rest_of_tokenlife_loads_on_first_use() -> None:
    code = (
        "import sys, tokenlife; assert 'tokenlife.library' not in sys.modules; "
        "tokenlife.Tokenlife; print('tokenlife.library' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "True", found.stderr
