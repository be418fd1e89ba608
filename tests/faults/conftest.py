"""Fixtures of the fault tests: fake providers that rotate refresh tokens (one strict, one
with a reuse grace window), a redis-server of the test's own, workers as process groups.

The long tests (kills, restarts, storms) carry the `faults` marker: `make test-faults`
runs them and `make test` leaves them out.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery
from tests.fakes.generic import FakeGeneric, FakeGenericWithGrace
from tests.fakes.server import FakeServers
from tests.faults.harness import (
    CALLBACK,
    FaultFakes,
    RedisServer,
    WorkerGroup,
    fault_integrations_toml,
    make_settings,
)
from tests.support import client_app

from tokenlife.runtime import Runtime
from tokenlife.settings import Settings


@pytest.fixture(scope="session")
def session_scratch() -> Iterator[Path]:
    """Like tmp_path_factory, but out of pytest's reach: pytest deletes all but the three
    newest base directories when a run starts, and on a shared machine another run would
    delete the AOF, logs and beat schedule of a fault test still running."""
    directory = Path(tempfile.mkdtemp(prefix="tokenlife-faults-"))
    yield directory
    if os.environ.get("TOKENLIFE_FAULTS_KEEP"):  # logs, AOF and beat schedules, to read
        print(f"fault test files kept in {directory}", file=sys.stderr)
    else:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def scratch(session_scratch: Path, request: pytest.FixtureRequest) -> Path:
    """A directory of this test's own (see session_scratch)."""
    path = session_scratch / re.sub(r"\W+", "-", request.node.name)[:60]
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def fault_fakes(session_scratch: Path) -> Iterator[FaultFakes]:
    strict, grace = FakeGeneric(), FakeGenericWithGrace()
    servers = FakeServers()
    servers.start(strict, grace)
    for fake in (strict, grace):
        fake.register("fault-client", "fault-secret", CALLBACK)
    path = session_scratch / "integrations.toml"
    path.write_text(fault_integrations_toml(strict, grace))
    yield FaultFakes(strict, grace, path)
    servers.stop()


@pytest.fixture
def slow_refreshes(fault_fakes: FaultFakes) -> Iterator[None]:
    """Every refresh answer takes a moment, so refreshes are in flight when we kill."""
    for fake in (fault_fakes.strict, fault_fakes.grace):
        fake.refresh_delay_seconds = 0.3
    yield
    for fake in (fault_fakes.strict, fault_fakes.grace):
        fake.refresh_delay_seconds = 0.0


@pytest.fixture
def minute_tokens(fault_fakes: FaultFakes) -> Iterator[int]:
    """Refreshes hand out access tokens that live a minute, so every connection comes due
    again every ~30 s: a storm that never stops. Yields the lifetime."""
    for fake in (fault_fakes.strict, fault_fakes.grace):
        fake.default_lifetime = 60
    yield 60
    for fake in (fault_fakes.strict, fault_fakes.grace):
        del fake.default_lifetime  # back to the class's


@pytest.fixture
def own_redis(scratch: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (AOF on), killed at the end whatever happened."""
    directory = scratch / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers() -> Iterator[list[WorkerGroup]]:
    """Worker groups a test started; whatever still runs is stopped at the end."""
    started: list[WorkerGroup] = []
    yield started
    for group in started:
        group.stop()


@dataclass
class PlainWorker:
    """A worker without beat on the suite's Redis: tests hand it refresh batches."""

    settings: Settings
    group: WorkerGroup
    app: Celery


@pytest.fixture(scope="session")
def plain_worker(
    redis_db: int, fault_fakes: FaultFakes, session_scratch: Path
) -> Iterator[PlainWorker]:
    # Its tests hand it a batch of every kind of provider fault at once, to see each answer
    # handled on its own; the circuit breaker would rightly hold such a host
    # (test_provider_outage.py tests that), so it is off here.
    settings = make_settings(
        f"redis://127.0.0.1:6379/{redis_db}", fault_fakes, breaker_min_failures=0
    )
    group = WorkerGroup(settings, session_scratch, "plain", beat=False)
    app = client_app(settings)
    group.start()
    try:
        group.wait_ready(app)
        yield PlainWorker(settings, group, app)
    finally:
        group.stop()
        app.close()


@pytest.fixture
async def runtimes() -> AsyncIterator[list[Runtime]]:
    """Runtimes a test opened on its loop; closed at the end."""
    opened: list[Runtime] = []
    yield opened
    for runtime in opened:
        with contextlib.suppress(Exception):  # its Redis may be gone by now
            await runtime.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[object]):  # type: ignore[no-untyped-def]
    """A failed fault test shows the tail of each worker's log."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    groups = list(funcargs.get("workers") or [])
    if "plain_worker" in funcargs:
        groups.append(funcargs["plain_worker"].group)
    if report.failed:
        for group in groups:
            tail = "\n".join(group.log().splitlines()[-60:])
            report.sections.append((f"worker {group.name} log (last 60 lines)", tail))
