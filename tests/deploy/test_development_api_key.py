"""The API key `tokenlife up` (so `make run`) makes when TOKENLIFE_API_KEYS is unset, and
the addresses it prints."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tokenlife import development
from tokenlife.cli import services
from tokenlife.web.auth import parse_api_keys


def test_the_development_api_key_is_made_once_private_and_accepted(tmp_path: Path) -> None:
    key, generated = development.development_api_key(tmp_path)
    assert generated and len(key) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / "api.key").st_mode)
    assert mode == 0o600
    assert development.development_api_key(tmp_path) == (key, False)
    (parsed,) = parse_api_keys([key])
    assert parsed.integrations is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://127.0.0.1:8080"),
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("tokens.internal", "http://tokens.internal:8080"),
    ],
)
def test_up_names_the_address_a_local_browser_reaches(host: str, url: str) -> None:
    assert development.local_url(host, 8080) == url


def test_up_shows_a_new_key_once_then_only_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENLIFE_API_KEYS", raising=False)
    # As on a terminal: plain lines on stderr (else they are log lines, docs/logging.md).
    monkeypatch.setenv("TOKENLIFE_LOG_FORMAT", "console")
    services._development_api_key(())
    key = (tmp_path / ".tokenlife" / "api.key").read_text().strip()
    first = capsys.readouterr().err
    assert key in first and "Authorization: Bearer" in first and "dashboard" in first
    assert os.environ["TOKENLIFE_API_KEYS"] == key  # what the API process inherits

    monkeypatch.delenv("TOKENLIFE_API_KEYS")
    services._development_api_key(())
    again = capsys.readouterr().err
    assert key not in again and ".tokenlife/api.key" in again
    assert os.environ["TOKENLIFE_API_KEYS"] == key


def test_up_leaves_configured_api_keys_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKENLIFE_API_KEYS", "configured-key-0123456789")
    services._development_api_key(("configured-key-0123456789",))
    assert not (tmp_path / ".tokenlife").exists()
    assert capsys.readouterr().err == ""
    assert os.environ["TOKENLIFE_API_KEYS"] == "configured-key-0123456789"


def test_with_json_logs_a_new_key_stays_in_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log shipper would keep a key printed to the log stream (and redaction would
    blank it anyway): the line names the file instead."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENLIFE_API_KEYS", raising=False)
    monkeypatch.setenv("TOKENLIFE_LOG_FORMAT", "json")
    services._development_api_key(())
    key = (tmp_path / ".tokenlife" / "api.key").read_text().strip()
    captured = capsys.readouterr()
    assert key not in captured.err and key not in captured.out
    assert os.environ["TOKENLIFE_API_KEYS"] == key
