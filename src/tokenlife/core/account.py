"""Who the account is, for providers without an ID token: the vendor's "current user" API.

GitHub, Dropbox, Box, Zoom and others issue no OIDC ID token, but each documents an
endpoint that answers, for the access token presented, the account it belongs to (GitHub
`GET /user` -> `id`). The catalogue names that endpoint and the field holding the account
id (`providers/*.toml`, facts `account_endpoint`, `account_method`, `account_id_field`);
this module validates those facts and reads the id out of the parsed JSON answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tokenlife.errors import InvalidAccountResponseError

AccountMethod = Literal["GET", "POST"]
ACCOUNT_METHODS: frozenset[str] = frozenset({"GET", "POST"})
# A JSON member name, or a dotted path of them into nested objects ("user.id").
ID_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# The same bound as an OIDC `sub` (OIDC Core §2), so both kinds of subject store alike.
MAX_ACCOUNT_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class AccountEndpoint:
    """Where to ask who the account is, and which member of the JSON answer says it.

    `url` may hold `{placeholder}`s until the integration is resolved."""

    url: str
    id_field: str
    method: AccountMethod = "GET"


def account_endpoint_from_facts(preset: str, facts: Mapping[str, object]) -> AccountEndpoint | None:
    """The account facts of a `[facts]` table, validated; None when the preset has none.

    `account_endpoint` and `account_id_field` come together; `account_method` defaults to
    GET. Raises ValueError naming the bad fact."""
    url, field, method = (facts.get(k) for k in
                          ("account_endpoint", "account_id_field", "account_method"))  # fmt: skip
    if url is None and field is None and method is None:
        return None
    if url is None or field is None:
        raise ValueError(f"{preset}: `account_endpoint` and `account_id_field` go together")
    if not isinstance(url, str) or not url.startswith("https://") or len(url) <= 12:
        raise ValueError(f"{preset}: `account_endpoint` must be an https URL")
    if not isinstance(field, str) or not ID_FIELD.fullmatch(field):
        raise ValueError(f"{preset}: `account_id_field` must be a field name or a dotted path")
    method = "GET" if method is None else method
    if method not in ACCOUNT_METHODS:
        raise ValueError(f"{preset}: `account_method` must be one of {sorted(ACCOUNT_METHODS)}")
    return AccountEndpoint(url=url, id_field=field, method="GET" if method == "GET" else "POST")


def parse_account_body(endpoint: AccountEndpoint, body: bytes) -> str:
    """The account id in a 200 answer's body; InvalidAccountResponseError otherwise.

    Messages name the field only, never values (the body may hold personal data)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidAccountResponseError("the account endpoint's answer is not JSON") from None
    return account_id(endpoint, document)


def account_id(endpoint: AccountEndpoint, document: object) -> str:
    """The id at `endpoint.id_field` of a parsed JSON document, as a string.

    A string is taken as it is; an integer (GitHub's numeric user id) becomes its decimal
    form, so `1` and `"1"` are the same account. Anything else is an error, not a guess."""
    value: object = document
    for name in endpoint.id_field.split("."):
        if not isinstance(value, dict):
            raise InvalidAccountResponseError(
                f"the account endpoint's answer has no object holding `{endpoint.id_field}`"
            )
        if name not in value:
            raise InvalidAccountResponseError(
                f"the account endpoint's answer has no `{endpoint.id_field}`"
            )
        value = value[name]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidAccountResponseError(
            f"`{endpoint.id_field}` in the account endpoint's answer is not a string or an integer"
        )
    subject = str(value)
    if not 0 < len(subject) <= MAX_ACCOUNT_ID_LENGTH or not subject.isascii() \
            or not subject.isprintable():  # fmt: skip
        raise InvalidAccountResponseError(
            f"`{endpoint.id_field}` in the account endpoint's answer is not 1-255 printable "
            "ASCII characters"
        )
    return subject
