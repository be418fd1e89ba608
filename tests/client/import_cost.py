"""What `import tokenlife.client` costs, measured in fresh interpreters: the modules it
loads, and the time it takes beside `import httpx` alone (the client's one dependency).

    python -m tests.client.import_cost [--runs 15] [--python PATH]

prints JSON: the median wall time of each import over `--runs` fresh interpreters of
`--python` (this one by default; a venv with only `tokenlife[client]` is what an app has),
run alternately so both see the same machine, and the `-X importtime` breakdown of the
client's own modules. docs/client.md quotes a run."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# The server's dependencies, none of which a client-only install has. (Not click: httpx
# loads it itself, for its command line, wherever it is installed.)
SERVER_MODULES = (
    "celery", "kombu", "apprise", "cryptography", "redis", "aiohttp", "pydantic",
    "pydantic_settings", "structlog", "prometheus_client", "uvloop", "hiredis", "yarl",
)  # fmt: skip


def beyond_httpx(python: str = sys.executable) -> set[str]:
    """The top-level packages, outside the standard library, that `import tokenlife.client`
    loads and `import httpx` does not."""
    extra = modules_loaded_by("tokenlife.client", python) - modules_loaded_by("httpx", python)
    return {name.partition(".")[0] for name in extra} - set(sys.stdlib_module_names)


def modules_loaded_by(module: str, python: str = sys.executable) -> set[str]:
    """The modules `import module` adds in a fresh interpreter (not the ones its start-up,
    site and .pth files, loaded before)."""
    code = (
        "import sys; before = set(sys.modules); "
        f"import {module}; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return set(found.stdout.split())


def import_seconds(module: str, python: str = sys.executable) -> float:
    code = (
        "import time; started = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - started)"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return float(found.stdout)


def own_breakdown(module: str, python: str = sys.executable) -> dict[str, int]:
    """`-X importtime`'s cumulative microseconds of each tokenlife module and of httpx (the
    first module to import httpx counts it too)."""
    found = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    times: dict[str, int] = {}
    for line in found.stderr.splitlines():
        _, _, rest = line.partition("import time:")
        fields = [field.strip() for field in rest.split("|")]
        if len(fields) == 3 and fields[1].isdigit():
            name = fields[2]
            if name == "httpx" or name.startswith("tokenlife"):
                times[name] = int(fields[1])
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", default=sys.executable)
    arguments = parser.parse_args(argv)
    runs, python = arguments.runs, arguments.python
    samples: dict[str, list[float]] = {"httpx": [], "tokenlife.client": []}
    for _ in range(runs):
        for module in samples:
            samples[module].append(import_seconds(module, python))
    loaded = modules_loaded_by("tokenlife.client", python)
    report = {
        "python": python,
        "runs": runs,
        "median_ms": {m: round(statistics.median(s) * 1000, 1) for m, s in samples.items()},
        "min_ms": {m: round(min(s) * 1000, 1) for m, s in samples.items()},
        "modules_loaded": {
            "tokenlife.client": len(loaded),
            "httpx": len(modules_loaded_by("httpx", python)),
        },
        "server_modules_loaded": sorted(
            {name.partition(".")[0] for name in loaded} & set(SERVER_MODULES)
        ),
        "packages_beyond_httpx": sorted(beyond_httpx(python)),
        "importtime_cumulative_us": own_breakdown("tokenlife.client", python),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
