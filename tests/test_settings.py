"""Settings read from the environment: bounds that only hold together, one readable error."""

from __future__ import annotations

import pytest

from tokenlife.errors import ConfigurationError
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
