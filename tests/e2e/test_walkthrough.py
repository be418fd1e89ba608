"""The README's five-minute walkthrough, run from the README itself.

The shell blocks of the section are executed as written, in a scratch directory whose
`.venv` is this test run's virtualenv, with three documented differences: the ports come
from the environment (TOKENLIFE_API_PORT, TOKENLIFE_DEMO_PORT, which the commands read)
and URLs in the blocks are rewritten to them; Redis is this run's database and key prefix;
and `make run` is the command its Makefile recipe runs, `tokenlife up` (make would reinstall
the virtualenv when pyproject.toml is newer). A block that ends in a long-running command
(`tokenlife demo-provider`, `make run`) starts it in the background; a second `make run`
stops the first with Ctrl-C (SIGINT to its process group), as a person does. The browser is
a plain HTTP client with a cookie jar that submits the demo's consent form.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import IO
from urllib.parse import urljoin

import pytest
import requests

from tests.redis_process import free_port
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # not resolved: the venv, not the base Python
SERVERS = ("make run", ".venv/bin/tokenlife demo-provider")


def walkthrough_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Five-minute walkthrough\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


class Walkthrough:
    """Runs the README's blocks in one shell environment carried from block to block."""

    def __init__(self, directory: Path, env: dict[str, str], api: int, demo: int) -> None:
        self.directory = directory
        self.env = env
        self.urls = {"127.0.0.1:8080": f"127.0.0.1:{api}", "127.0.0.1:8090": f"127.0.0.1:{demo}"}
        self.api_url = f"http://127.0.0.1:{api}"
        self.demo_url = f"http://127.0.0.1:{demo}"
        self.servers: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self.blocks = walkthrough_blocks()

    def block(self, contains: str) -> str:
        (found,) = [b for b in self.blocks if contains in b]
        return found

    def run(self, block: str) -> str:
        """Run a block; its stdout. A last line that starts a server starts it."""
        for written, actual in self.urls.items():
            block = block.replace(written, actual)
        *commands, last = block.strip().splitlines()
        if last not in SERVERS:
            commands.append(last)
        output = self._shell("\n".join(commands)) if commands else ""
        if last in SERVERS:
            self._start(last)
        return output

    def log(self, server: str) -> str:
        return (self.directory / f"{server.split()[-1]}.log").read_text(errors="replace")

    def _shell(self, script: str) -> str:
        env_file = self.directory / ".walkthrough-env"
        done = subprocess.run(
            ["bash", "-e", "-c", f"{script}\nenv -0 > {env_file}"],
            cwd=self.directory, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        pairs = (e.partition("=") for e in env_file.read_text().split("\0") if e)
        self.env = {k: v for k, _, v in pairs}
        return done.stdout

    def _start(self, command: str) -> None:
        self._stop(command)
        argv = [".venv/bin/tokenlife", "up"] if command == "make run" else command.split()
        log = (self.directory / f"{command.split()[-1]}.log").open("ab")
        process = subprocess.Popen(
            argv, cwd=self.directory, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.servers[command] = (process, log)
        probe = f"{self.api_url}/healthz" if command == "make run" else f"{self.demo_url}/"
        wait_for(lambda: process.poll() is not None or _answers(probe), timeout=30,
                 what=f"{command} to answer at {probe}")  # fmt: skip
        assert process.poll() is None, f"{command} exited:\n{self.log(command)[-3000:]}"

    def _stop(self, command: str, how: signal.Signals = signal.SIGINT) -> None:
        """SIGINT: Ctrl-C in its terminal. SIGKILL: at the end, when nothing is asserted."""
        running = self.servers.pop(command, None)
        if running is None:
            return
        process, log = running
        os.killpg(process.pid, how)
        try:
            process.wait(timeout=20)

        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()

    def stop_all(self) -> None:
        for command in list(self.servers):
            self._stop(command, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class _Form(HTMLParser):
    """The fields of the consent page's form, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.buttons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "input" and named.get("name"):
            self.fields[str(named["name"])] = named.get("value") or ""
        if tag == "button" and named.get("name") == "decision":
            self.buttons.append(named.get("value") or "")


def open_in_browser(url: str) -> tuple[str, str]:
    """Open the connect link, press Allow on the consent page: (consent page, result page)."""
    with requests.Session() as browser:
        to_provider = browser.get(url, allow_redirects=False, timeout=10)
        assert to_provider.status_code == 302, to_provider.text
        consent_url = to_provider.headers["Location"]
        consent_page = browser.get(consent_url, timeout=10)
        assert consent_page.status_code == 200, consent_page.text
        form = _Form()
        form.feed(consent_page.text)
        assert form.buttons == ["allow", "deny"]
        # <form method=post> without an action posts to the page's own URL.
        allowed = browser.post(consent_url, data={**form.fields, "decision": "allow"},
                               allow_redirects=False, timeout=10)  # fmt: skip
        assert allowed.status_code == 302, allowed.text
        landing = browser.get(urljoin(consent_url, allowed.headers["Location"]), timeout=40)
        assert landing.status_code == 200, landing.text
    return html.unescape(consent_page.text), html.unescape(landing.text)


def shown(output: str) -> dict[str, str]:
    """`tokenlife connections show` as a dict of its lines."""
    return dict(line.split(None, 1) for line in output.strip().splitlines() if " " in line)


@pytest.fixture
def walkthrough(redis_db: int, tmp_path: Path) -> Iterator[Walkthrough]:
    (tmp_path / ".venv").symlink_to(VENV)
    api, demo = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
    env |= {
        "TOKENLIFE_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "TOKENLIFE_KEY_PREFIX": f"walk-{uuid.uuid4().hex[:8]}",
        "TOKENLIFE_API_PORT": str(api),
        "TOKENLIFE_DEMO_PORT": str(demo),
    }
    walk = Walkthrough(tmp_path, env, api, demo)
    try:
        yield walk
    finally:
        walk.stop_all()


def test_make_run_is_tokenlife_up() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "tokenlife up" in recipe


def test_the_walkthrough_shows_the_diagnosis_then_the_recovery(walkthrough: Walkthrough) -> None:
    walk = walkthrough
    walk.run(walk.block("demo-provider\n"))
    walk.run(walk.block("--print-integrations"))
    assert 'provider = "custom"' in (walk.directory / "demo.toml").read_text()
    wait_for(lambda: "preflight error demo-google" in walk.log("make run"), timeout=15,
             what="the worker's start-up check to name the mistake")  # fmt: skip

    # Connect: the link, the consent page, tokenlife's page.
    session = walk.block("connect-sessions")
    consent, landing = open_in_browser(_json_url(walk.run(session)))
    assert "This request carries no access_type and prompt=select_account." in consent
    assert "Connected, but it won't stay connected." in landing
    assert 'Use provider "google"' in landing
    assert "a refresh token with this code: no" in walk.log("demo-provider")

    # The alert, from the shell.
    alert = walk.block("events tail")
    connection_output, _, tail = walk.run(alert).partition("alert.refresh_token_missing")
    connection = shown(connection_output)
    assert connection["status"] == "degraded", connection_output
    assert connection["verdict"] == "refresh_token_missing"
    assert connection["has_refresh_token"] == "False"
    assert "demo-google/ada  status=degraded" in tail
    assert 'fix: Use provider "google": set provider = "google" in the integration.' in tail

    # The fix, the restart, the reconnect.
    walk.run(walk.block("sed -i"))
    assert 'provider = "google"' in (walk.directory / "demo.toml").read_text()
    (restart,) = [b for b in walk.blocks if b.strip() == "make run"]
    walk.run(restart)
    consent, landing = open_in_browser(_json_url(walk.run(session)))
    assert "This request carries access_type=offline and prompt=consent." in consent
    assert "The account is connected." in landing
    assert "a refresh token with this code: yes" in walk.log("demo-provider")

    # The recovery, and a refresh that uses the new refresh token.
    recovery = walk.block("/refresh")
    before, queued, after = walk.run(recovery).partition('{"queued": true}')
    connection = shown(before)
    assert connection["status"] == "active", before
    assert connection["verdict"] == "refreshable"
    assert connection["has_refresh_token"] == "True"
    assert queued, after
    again = recovery.strip().splitlines()[-1]
    wait_for(lambda: int(shown(after)["version"]) > int(connection["version"]) or
             int(shown(walk.run(again))["version"]) > int(connection["version"]),
             timeout=15, what="the refresh asked for to be done")  # fmt: skip
    assert "refresh token used by demo-google-client" in walk.log("demo-provider")


def _json_url(output: str) -> str:
    match = re.search(r'"url": "([^"]+)"', output)
    assert match, output
    return match.group(1)
