"""parse_id_token: the OIDC Core §3.1.3.7 claims tokenlife relies on, as a table."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from tokenlife.core.id_token import IdTokenClaims, account_subject, parse_id_token
from tokenlife.core.integration import Integration
from tokenlife.core.tokens import TokenSet
from tokenlife.errors import InvalidIdTokenError
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets

NOW = 1_700_000_000.0
ISSUER = "https://idp.example.com"
GOOD = {"iss": ISSUER, "sub": "248289761001", "aud": "client", "exp": NOW + 600, "iat": NOW}


def jwt(claims: Any, header: bytes = b'{"alg":"RS256"}') -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return f"{part(header)}.{part(payload)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("claims", "issuer"),
    [
        pytest.param(GOOD, ISSUER, id="all-checked"),
        pytest.param(GOOD, None, id="issuer-unknown"),
        pytest.param({**GOOD, "aud": ["other", "client"]}, ISSUER, id="aud-list"),
        pytest.param({**GOOD, "exp": NOW - 299}, ISSUER, id="expired-within-skew"),
        pytest.param({**GOOD, "iss": "https://other.example"}, None, id="any-iss-when-unknown"),
    ],
)
def test_a_valid_id_token_gives_the_subject(claims: dict[str, Any], issuer: str | None) -> None:
    parsed = parse_id_token(jwt(claims), client_id="client", issuer=issuer, now=NOW)
    assert parsed == IdTokenClaims(subject="248289761001", issuer=claims["iss"])


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param(None, "not a string", id="none"),
        pytest.param("", "not a string", id="empty"),
        pytest.param("x" * 70_000, "not a string", id="huge"),
        pytest.param("a.b", "not a JWT", id="two-parts"),
        pytest.param("a.b.c.d.e", "encrypted", id="jwe"),
        pytest.param("a.!!!.c", "not base64url-encoded JSON", id="bad-base64"),
        pytest.param(jwt(b"\xff\xfe"), "not base64url-encoded JSON", id="not-utf8"),
        pytest.param(jwt(["sub"]), "not a JSON object", id="array-payload"),
        pytest.param(jwt({**GOOD, "sub": ""}), "no `sub`", id="empty-sub"),
        pytest.param(jwt({**GOOD, "sub": 42}), "no `sub`", id="numeric-sub"),
        pytest.param(jwt({**GOOD, "sub": "s" * 256}), "1-255", id="long-sub"),
        pytest.param(jwt({**GOOD, "sub": "caf\u00e9"}), "1-255", id="non-ascii-sub"),
        pytest.param(jwt({k: v for k, v in GOOD.items() if k != "iss"}), "no `iss`", id="no-iss"),
        pytest.param(jwt({**GOOD, "iss": ISSUER + "/"}), "`iss`", id="iss-trailing-slash"),
        pytest.param(jwt({**GOOD, "aud": "other"}), "`aud`", id="other-audience"),
        pytest.param(jwt({**GOOD, "aud": ["other"]}), "`aud`", id="other-audience-list"),
        pytest.param(jwt({**GOOD, "aud": 7}), "`aud`", id="numeric-audience"),
        pytest.param(jwt({**GOOD, "aud": ["client", 7]}), "`aud`", id="mixed-audience"),
        pytest.param(jwt({**GOOD, "exp": "soon"}), "`exp`", id="string-exp"),
        pytest.param(jwt({**GOOD, "exp": True}), "`exp`", id="bool-exp"),
        pytest.param(jwt({**GOOD, "exp": NOW - 301}), "expired", id="expired"),
    ],
)
def test_a_bad_id_token_is_a_typed_error_that_quotes_no_value(token: Any, message: str) -> None:
    with pytest.raises(InvalidIdTokenError, match=message) as caught:
        parse_id_token(token, client_id="client", issuer=ISSUER, now=NOW)
    assert caught.value.error == "invalid_id_token"
    assert "248289761001" not in str(caught.value)


def _integration() -> Integration:
    config = IntegrationConfig(
        provider="custom", client_id="client", client_secret="s",
        redirect_uri="https://app.example.com/cb", authorize_url=f"{ISSUER}/a",
        token_url=f"{ISSUER}/t",
    )  # fmt: skip
    return dataclasses.replace(resolve("it", config, load_presets()["custom"], "s", 30),
                               issuer=ISSUER)  # fmt: skip


def _tokens(id_token: str | None) -> TokenSet:
    return TokenSet("at", "Bearer", None, NOW + 3600, 3600, "expires_in", None, id_token)


@pytest.mark.parametrize(
    ("id_token", "requested", "subject"),
    [
        pytest.param(jwt(GOOD), ("openid",), "248289761001", id="id-token"),
        pytest.param(jwt(GOOD), ("profile",), "248289761001", id="id-token-unasked"),
        pytest.param(None, ("profile",), None, id="no-openid-no-id-token"),
        pytest.param(None, (), None, id="no-scopes"),
    ],
)
def test_account_subject(
    id_token: str | None, requested: tuple[str, ...], subject: str | None
) -> None:
    assert account_subject(_integration(), _tokens(id_token), NOW, requested) == subject


def test_openid_requested_and_no_id_token_is_an_invalid_id_token() -> None:
    # OIDC Core §3.1.3.3: the id_token is REQUIRED; without it the account can't be told.
    with pytest.raises(InvalidIdTokenError, match=r"no id_token.*openid"):
        account_subject(_integration(), _tokens(None), NOW, ("openid", "profile"))
