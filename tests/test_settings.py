"""Settings read from the environment: bounds that only hold together, one readable error."""

from __future__ import annotations

import pytest

from tokenlife.errors import ConfigurationError
from tokenlife.log_redaction import redact_text
from tokenlife.settings import load_settings


@pytest.mark.parametrize(
    ("wait", "timeout", "message"),
    [
        pytest.param("API_TOKEN_WAIT_SECONDS", "30", "TOKENLIFE_API_TOKEN_WAIT_SECONDS must be"
                     " below TOKENLIFE_API_REQUEST_TIMEOUT_SECONDS", id="token-wait"),
        pytest.param("API_CALLBACK_WAIT_SECONDS", "30", "TOKENLIFE_API_CALLBACK_WAIT_SECONDS "
                     "must be below", id="callback-wait"),
    ],
)  # fmt: skip
def test_a_wait_at_or_over_the_request_timeout_is_refused(
    monkeypatch: pytest.MonkeyPatch, wait: str, timeout: str, message: str
) -> None:
    """The handler's own bound must end first, or its 503 with Retry-After becomes a 504."""
    monkeypatch.setenv("TOKENLIFE_API_REQUEST_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("TOKENLIFE_API_TOKEN_WAIT_SECONDS", "8")
    monkeypatch.setenv("TOKENLIFE_API_CALLBACK_WAIT_SECONDS", "10")
    monkeypatch.setenv(f"TOKENLIFE_{wait}", timeout)

    with pytest.raises(ConfigurationError, match=message):
        load_settings()

    monkeypatch.setenv(f"TOKENLIFE_{wait}", "19.5")
    assert load_settings().api_request_timeout_seconds == 20


@pytest.mark.parametrize(
    ("name", "url", "says"),
    [
        ("REDIS_URL", "redis://:hun/ter2pw@127.0.0.1:6379/0", "not a valid URL"),
        ("REDIS_URL", "redis://:hunter2pw@127.0.0.1:99999/0", "not a valid URL"),
        ("REDIS_URL", "http://:hunter2pw@127.0.0.1/0", "the scheme must be one of redis,"),
        ("BROKER_URL", "amqp://g:hun/ter2pw@h//;amqp://g:hunter2pw@h2//", "not a valid URL"),
    ],
)
def test_a_bad_url_is_one_line_naming_the_setting_and_not_the_password(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str, says: str
) -> None:
    """Else redis-py or kombu raise later, quoting the "port": part of the password."""
    monkeypatch.setenv(f"TOKENLIFE_{name}", url)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert f"TOKENLIFE_{name}: {says}" in str(raised.value)
    assert "hun" not in str(raised.value) and "ter2pw" not in str(raised.value)
    # The hint survives the log redaction it passes through (no URL-shaped template).
    assert redact_text(str(raised.value)) == str(raised.value)


def test_a_sentinel_list_is_a_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = "sentinel://:pw@h1:26379;sentinel://:pw@h2:26379"
    monkeypatch.setenv("TOKENLIFE_BROKER_URL", listed)
    assert load_settings().effective_broker_url == listed
