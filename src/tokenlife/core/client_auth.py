"""Client authentication at the token endpoint (RFC 6749 §2.3.1), as a table of functions."""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import quote

Headers = dict[str, str]
Form = dict[str, str]
Method = Callable[[str, str | None, Form, Headers], None]


def client_secret_basic(client_id: str, secret: str | None, form: Form, headers: Headers) -> None:
    # §2.3.1: id and secret are form-urlencoded *before* base64; many clients forget.
    user = quote(client_id, safe="")
    password = quote(secret or "", safe="")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    headers["Authorization"] = f"Basic {token}"


def client_secret_post(client_id: str, secret: str | None, form: Form, headers: Headers) -> None:
    form["client_id"] = client_id
    if secret is not None:
        form["client_secret"] = secret


def none(client_id: str, secret: str | None, form: Form, headers: Headers) -> None:
    # Public clients identify themselves but prove nothing (§2.1, RFC 7636 takes over).
    form["client_id"] = client_id


METHODS: dict[str, Method] = {
    "client_secret_basic": client_secret_basic,
    "client_secret_post": client_secret_post,
    "none": none,
}
