"""The worker of an app's own Celery project (tests/fakes/app_celery.py) as a real process,
on tokenlife's broker with a queue of its own, for the tests of tokenlife's Celery
signatures and of event handlers that send the app's tasks.

A test module takes the fixture with `from tests.app_worker import app_worker`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from tests.support import stop_worker, wait_for, worker_environment
from tokenlife.celery_signatures import client_app
from tokenlife.settings import Settings


@dataclass
class AppWorker:
    queue: str
    client: Celery  # on tokenlife's broker, as the app's code would send from
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def app_worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorker]:
    directory = tmp_path_factory.mktemp("app-worker")
    log_path = directory / "app-worker.log"
    queue = f"{settings.key_prefix}-app"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.fakes.app_celery", "worker",
                "--pool", "solo", "--loglevel", "INFO", "-Q", queue,
                "--hostname", f"app-{settings.key_prefix}@%h", "--without-gossip",
                "--without-mingle",
            ],
            # The app's module is tests.fakes.app_celery: the checkout on the path, as
            # `python -m` from the checkout puts it there and cwd here is elsewhere.
            env={**worker_environment(settings), "PYTHONPATH": _with_checkout()},
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = client_app(settings, main="test-app-client")
        try:
            name = f"app-{settings.key_prefix}@"
            wait_for(
                lambda: (
                    process.poll() is not None
                    or any(name in n for r in client.control.ping(timeout=0.5) for n in r)
                ),
                timeout=60,
                what="the app's worker to answer ping",
            )
            if process.poll() is not None:
                pytest.fail(f"the app's worker exited:\n{log_path.read_text()}")
            yield AppWorker(queue=queue, client=client, process=process, log_path=log_path)
        finally:
            stop_worker(process)
            client.close()


def _with_checkout() -> str:
    checkout = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH", "")) if p)
