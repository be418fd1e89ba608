"""Bearer keys: parsing, scoping, and headers that are not keys at all."""

from __future__ import annotations

import pytest

from tokenlife.web.auth import authenticate, parse_api_keys

KEYS = parse_api_keys(["a-full-access-key-123", "a-limited-key-456789:crm|hr"])


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("Bearer a-full-access-key-123", 0),
        ("Bearer a-limited-key-456789", 1),
        ("Bearer a-limited-key-456789:crm|hr", None),  # the scope is not part of the key
        ("a-full-access-key-123", None),
        ("Bearer ", None),
        ("Bearer \udcff\udcfe", None),  # undecodable bytes, as aiohttp passes them on
        (None, None),
    ],
)
def test_authenticate(header: str | None, found: int | None) -> None:
    key = authenticate(header, KEYS)
    assert key is (None if found is None else KEYS[found])


def test_scopes() -> None:
    assert KEYS[0].allows("anything")
    assert KEYS[1].allows("crm") and not KEYS[1].allows("billing")


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        parse_api_keys(["short"])


def test_an_empty_integration_list_is_refused_not_read_as_all() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_api_keys(["a-key-of-enough-length:"])


def test_a_key_listed_twice_is_refused_whatever_its_scope() -> None:
    """Else the API would use the last entry and a dashboard session the first."""
    with pytest.raises(ValueError, match="listed twice") as refused:
        parse_api_keys(["a-full-access-key-123:crm", "a-full-access-key-123"])
    assert "a-full-access-key-123" not in str(refused.value)
