"""TOKENLIFE_DOCS_URL: notifications are read far from the repository, so the link is absolute."""

from __future__ import annotations

import pytest

from tokenlife.errors import ConfigurationError
from tokenlife.settings import load_settings


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("", ""),  # unset: no site is published, messages name the section instead
        ("https://wiki.example.com/tokenlife/troubleshooting", None),
        ("https://wiki.example.com/t#old-anchor", "https://wiki.example.com/t"),
    ],
)
def test_an_absolute_url_or_none(
    monkeypatch: pytest.MonkeyPatch, value: str, kept: str | None
) -> None:
    monkeypatch.setenv("TOKENLIFE_DOCS_URL", value)
    assert load_settings().docs_url == (value if kept is None else kept)


@pytest.mark.parametrize("value", ["docs/troubleshooting.md", "file:///srv/docs.md", "https://"])
def test_a_relative_link_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TOKENLIFE_DOCS_URL", value)
    with pytest.raises(ConfigurationError, match=r"TOKENLIFE_DOCS_URL: .* not an absolute http"):
        load_settings()
