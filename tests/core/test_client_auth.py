"""Client authentication at the token endpoint (RFC 6749 §2.3.1)."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest

from tokenlife.core import client_auth


def basic_credentials(header: str) -> tuple[str, str]:
    """Undo client_secret_basic: base64, then split on the first ':', then form-decode."""
    scheme, _, token = header.partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(token, validate=True).decode("ascii").partition(":")
    return unquote(user), unquote(password)


@pytest.mark.parametrize(
    ("client_id", "secret", "encoded_pair"),
    [
        pytest.param("client", "s3cret", "client:s3cret", id="plain"),
        pytest.param("client", "a:b%c", "client:a%3Ab%25c", id="colon-and-percent"),
        pytest.param("id:with:colons", "x", "id%3Awith%3Acolons:x", id="colon-in-id"),
        pytest.param(
            "client", "p@ss w+rd/=&?", "client:p%40ss%20w%2Brd%2F%3D%26%3F", id="reserved"
        ),
        pytest.param("client", "pässwörd", "client:p%C3%A4ssw%C3%B6rd", id="non-ascii-utf8"),
        pytest.param("client", "a-b_c.d~e", "client:a-b_c.d~e", id="unreserved-kept"),
        pytest.param("client", "", "client:", id="empty-secret"),
        pytest.param("client", None, "client:", id="no-secret"),
    ],
)
def test_client_secret_basic(client_id: str, secret: str | None, encoded_pair: str) -> None:
    form: dict[str, str] = {"grant_type": "refresh_token"}
    headers: dict[str, str] = {}
    client_auth.client_secret_basic(client_id, secret, form, headers)
    assert form == {"grant_type": "refresh_token"}
    assert set(headers) == {"Authorization"}
    assert headers["Authorization"] == (
        "Basic " + base64.b64encode(encoded_pair.encode("ascii")).decode("ascii")
    )
    assert basic_credentials(headers["Authorization"]) == (client_id, secret or "")


@pytest.mark.parametrize(
    ("method", "secret", "expected_form"),
    [
        pytest.param(
            "client_secret_post",
            "a:b%c",
            {"grant_type": "refresh_token", "client_id": "client", "client_secret": "a:b%c"},
            id="post-with-secret",
        ),
        pytest.param(
            "client_secret_post",
            None,
            {"grant_type": "refresh_token", "client_id": "client"},
            id="post-without-secret",
        ),
        pytest.param(
            "none",
            "ignored",
            {"grant_type": "refresh_token", "client_id": "client"},
            id="none-ignores-secret",
        ),
        pytest.param(
            "none", None, {"grant_type": "refresh_token", "client_id": "client"}, id="none"
        ),
    ],
)
def test_form_methods(method: str, secret: str | None, expected_form: dict[str, str]) -> None:
    form: dict[str, str] = {"grant_type": "refresh_token"}
    headers: dict[str, str] = {"Accept": "application/json"}
    client_auth.METHODS[method]("client", secret, form, headers)
    assert form == expected_form  # sent as given: the form encoder escapes it once
    assert headers == {"Accept": "application/json"}


def test_method_table() -> None:
    methods = client_auth.METHODS
    assert methods == {
        "client_secret_basic": client_auth.client_secret_basic,
        "client_secret_post": client_auth.client_secret_post,
        "none": client_auth.none,
    }
