"""Create-session bodies: what is accepted, and which field a refusal names."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import pytest

from tokenlife.core.connect_session import (
    SessionRequest,
    SessionRequestError,
    parse_session_request,
    plausible_token,
    token_hash,
)
from tokenlife.web.connect import allowed_return_to

BASE = {"integration": "google", "connection_id": "user-42"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (BASE, SessionRequest("google", "user-42", None, None)),
        ({**BASE, "return_to": None, "end_user": None}, SessionRequest("google", "user-42", None,
                                                                         None)),
        ({**BASE, "return_to": "https://app.example.com/x?y=1"},
         SessionRequest("google", "user-42", "https://app.example.com/x?y=1", None)),
        ({**BASE, "end_user": {"id": "42"}}, SessionRequest("google", "user-42", None,
                                                            {"id": "42"})),
        ({**BASE, "end_user": {"id": "42", "email": "ada@example.com",
                               "display_name": "Ada Łovelace 🙂"}},
         SessionRequest("google", "user-42", None,
                        {"id": "42", "email": "ada@example.com",
                         "display_name": "Ada Łovelace 🙂"})),
    ],
)  # fmt: skip
def test_accepted_bodies(body: dict[str, Any], expected: SessionRequest) -> None:
    assert parse_session_request(body) == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("google", "body"),
        (None, "body"),
        ({"connection_id": "u1"}, "integration"),
        ({**BASE, "integration": 7}, "integration"),
        ({**BASE, "integration": ""}, "integration"),
        ({"integration": "google"}, "connection_id"),
        ({**BASE, "connection_id": 42}, "connection_id"),
        ({**BASE, "connection_id": "../../etc/passwd"}, "connection_id"),
        ({**BASE, "connection_id": "..%2f..%2f"}, "connection_id"),
        ({**BASE, "connection_id": "a\x00b"}, "connection_id"),
        ({**BASE, "connection_id": "user\n42"}, "connection_id"),
        ({**BASE, "connection_id": "üser"}, "connection_id"),
        ({**BASE, "connection_id": "a" * 1000}, "connection_id"),
        ({**BASE, "return_url": "https://app.example.com/"}, "return_url"),  # a typo
        ({**BASE, "return_to": 5}, "return_to"),
        ({**BASE, "return_to": ""}, "return_to"),
        ({**BASE, "return_to": "https://app.example.com/\r\nSet-Cookie: a=b"}, "return_to"),
        ({**BASE, "return_to": "https://app.example.com/ x"}, "return_to"),
        ({**BASE, "return_to": "https://app.example.com/" + "a" * 2048}, "return_to"),
        ({**BASE, "end_user": "ada"}, "end_user"),
        ({**BASE, "end_user": {}}, "end_user.id"),
        ({**BASE, "end_user": {"email": "ada@example.com"}}, "end_user.id"),
        ({**BASE, "end_user": {"id": 42}}, "end_user.id"),
        ({**BASE, "end_user": {"id": "  "}}, "end_user.id"),
        ({**BASE, "end_user": {"id": "x" * 256}}, "end_user.id"),
        ({**BASE, "end_user": {"id": "4\x002"}}, "end_user.id"),
        ({**BASE, "end_user": {"id": "42", "email": "not-an-address"}}, "end_user.email"),
        ({**BASE, "end_user": {"id": "42", "email": "a@b@c"}}, "end_user.email"),
        ({**BASE, "end_user": {"id": "42", "email": "a@" + "b" * 320}}, "end_user.email"),
        ({**BASE, "end_user": {"id": "42", "display_name": "Ada\u2028Evil"}},
         "end_user.display_name"),
        ({**BASE, "end_user": {"id": "42", "display_name": ["Ada"]}}, "end_user.display_name"),
        ({**BASE, "end_user": {"id": "42", "role": "admin"}}, "end_user.role"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(body: object, field: str) -> None:
    with pytest.raises(SessionRequestError) as refused:
        parse_session_request(body)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


ALLOWED = ("https://app.example.com/", "https://portal.example.com/apps/")


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("https://app.example.com/done", True),
        ("https://APP.example.com/done?x=1#f", True),
        ("https://portal.example.com/apps/42", True),
        ("https://portal.example.com/admin", False),  # outside the prefix's path
        ("http://app.example.com/done", False),  # scheme compared exactly
        ("https://app.example.com.evil.io/done", False),  # lookalike: a longer host
        ("https://app.example.com:444/done", False),
        ("https://app.example.com@evil.io/done", False),  # userinfo: the host is evil.io
        ("https://evil.io\\@app.example.com/", False),
        ("https://app.example.com\\.evil.io/", False),  # a slash to browsers
        ("https://\u0430pp.example.com/done", False),  # a Cyrillic a (U+0430)
        ("https://app.example.com./done", False),  # trailing dot: another origin
        ("javascript:alert(1)//https://app.example.com/", False),
        ("JAVASCRIPT://app.example.com/%0aalert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("//app.example.com/done", False),  # scheme-relative
        ("/done", False),
        ("https://app.example.com/\r\nSet-Cookie: a=b", False),
        ("https://app.example.com/%0d%0aSet-Cookie:%20a=b", True),  # encoded: inert in a URL
        ("https://app.example.com/\x00", False),
        ("https://app.example.com/\t", False),
    ],
)
def test_return_to_allow_list(value: str, allowed: bool) -> None:
    assert allowed_return_to(value, ALLOWED) is allowed


def test_only_the_hash_of_a_token_is_derived_and_it_is_sha256() -> None:
    token = secrets.token_urlsafe(32)
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in token_hash(token)


@pytest.mark.parametrize(
    ("token", "plausible"),
    [
        ("Ji5Ck-HPlsqvIaeyvvX_DDsnvA8HzKZKlqvUL-w6AVw", True),  # a token_urlsafe(32)
        (None, False),
        ("", False),
        ("short", False),
        ("x" * 129, False),
        ("a" * 20 + "\x00", False),
        ("a" * 20 + "/..", False),
        ("ü" * 20, False),
        (["a" * 43], False),
    ],
)
def test_plausible_tokens(token: object, plausible: bool) -> None:
    assert plausible_token(token) is plausible
