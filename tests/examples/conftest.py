"""The tokenlife deployment that the examples using its HTTP API (or its connect pages)
talk to: `tokenlife api` and a worker, as processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.examples.processes import (
    API_KEY,
    GENERIC_CLIENT,
    GOOGLE_CLIENT,
    LOGS,
    Stack,
    app_environment,
    example_settings,
    free_ports,
    serving,
    stack_integrations,
)
from tests.support import Fakes, client_app, start_worker, stop_worker, wait_for
from tokenlife.settings import Settings


@pytest.fixture(scope="session")
def tokenlife_stack(
    settings: Settings, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """`tokenlife api` and `celery -A tokenlife.worker worker` as processes, on a key
    prefix of their own; the integrations' redirect URI is the API's /oauth/callback."""
    directory = tmp_path_factory.mktemp("tokenlife-stack")
    api_port, flask_port, fastapi_port = free_ports(3)
    callback = f"http://127.0.0.1:{api_port}/oauth/callback"
    fakes.google.register(*GOOGLE_CLIENT, callback)
    fakes.generic.register(*GENERIC_CLIENT, callback)
    own = example_settings(settings, "stack", stack_integrations(fakes, callback), directory)
    ports = {"flask": flask_port, "fastapi": fastapi_port}
    allowed = ",".join(f"http://127.0.0.1:{port}/" for port in ports.values())
    LOGS["worker.log"] = directory / "worker.log"
    with LOGS["worker.log"].open("wb") as log:
        worker = start_worker(own, directory, log, f"examples-{own.key_prefix}")
        app = client_app(own)
        command = [sys.executable, "-m", "tokenlife.cli", "api", "--port", str(api_port)]
        env = app_environment(
            own, TOKENLIFE_API_KEYS=API_KEY, TOKENLIFE_API_RETURN_TO_ALLOWED=allowed
        )
        try:
            # The API starts while the worker does.
            with serving(command, env, api_port, directory / "api.log", ready="/healthz") as api:
                wait_for(
                    lambda: worker.poll() is not None or bool(app.control.ping(timeout=0.5)),
                    timeout=60, what="the examples' worker to answer ping",
                )  # fmt: skip
                assert worker.poll() is None, LOGS["worker.log"].read_text()
                yield Stack(api, own, ports)
        finally:
            LOGS.pop("worker.log")
            stop_worker(worker)
            app.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """A failing test shows the last lines of every app and tokenlife process running."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for name, path in LOGS.items():
            tail = path.read_text(errors="replace").splitlines()[-60:]
            report.sections.append((f"{name} (last 60 lines)", "\n".join(tail)))
