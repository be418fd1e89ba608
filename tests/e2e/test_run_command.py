"""`tokenlife up` (what `make run` calls) on a machine with no Redis and no key.

The test runs it in a network namespace of its own, where nothing answers on
127.0.0.1:6379, so the embedded Redis path is exercised without touching the real one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_for
from tokenlife.development import development_key

needs_namespaces = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs root and unshare(1) for a private network namespace",
)


PROBE = """
import time, urllib.request
for _ in range(120):  # bounded: a minute at most
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1) as r:
            print("HEALTHZ", r.status, flush=True)
            break
    except OSError:
        time.sleep(0.5)
"""


@needs_namespaces
def test_up_starts_redis_a_dev_key_the_worker_and_the_api_when_nothing_is_configured(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
    tokenlife = str(Path(sys.executable).with_name("tokenlife"))
    (tmp_path / "probe.py").write_text(PROBE)
    script = f"ip link set lo up && {{ {tokenlife} up & {sys.executable} probe.py; wait; }}"
    output = tmp_path / "run.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", script],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: (
                    ("ready." in output.read_text() and "HEALTHZ 200" in output.read_text())
                    or process.poll() is not None
                ),
                timeout=90,
                what="the worker to be ready and the API to answer",
            )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    log = output.read_text()
    assert "started an embedded Redis at redis://127.0.0.1:" in log, log[-3000:]
    assert "generated a development encryption key" in log
    assert "ready." in log and "HEALTHZ 200" in log
    state = tmp_path / ".tokenlife"
    assert (state / "dev.key").stat().st_mode & 0o777 == 0o600
    # Every process of the group got SIGTERM; Redis finishes its shutdown on its own time.
    wait_for(lambda: "Redis is now ready to exit" in (state / "redis.log").read_text(),
             timeout=30, what="the embedded Redis to shut down")  # fmt: skip


def test_development_key_is_generated_once_then_reused(tmp_path: Path) -> None:
    key, path, generated = development_key(tmp_path / ".tokenlife")
    again, path_again, generated_again = development_key(tmp_path / ".tokenlife")
    assert generated and not generated_again
    assert key == again and path == path_again == tmp_path / ".tokenlife" / "dev.key"
