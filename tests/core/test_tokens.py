"""Token endpoint responses (RFC 6749 §5.1 success, §5.2 error) as tables."""

from __future__ import annotations

import base64
import json
import math
from typing import Any, NamedTuple

import pytest

from tokenlife.core.tokens import (
    MAX_EXPIRES_IN_SECONDS,
    TokenSet,
    jwt_expiry,
    parse_expires_in,
    parse_scope,
    parse_token_response,
    token_set_from_payload,
)
from tokenlife.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidResponseError,
    InvalidScopeError,
    OAuthError,
    ProviderError,
    RateLimitedError,
    ServerError,
    TemporarilyUnavailableError,
    TokenlifeError,
    TransientError,
)

NOW = 1_700_000_000.0
ACCESS = "AT-secret-value-5f1c"
REFRESH = "RT-secret-value-9a2e"
JSON = "application/json"
HTML = "text/html; charset=utf-8"


def jwt(claims: dict[str, Any]) -> str:
    def segment(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    return f"{segment({'alg': 'RS256', 'typ': 'JWT'})}.{segment(claims)}.c2lnbmF0dXJl"


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


JWT_ONE_HOUR = jwt({"sub": "user", "exp": int(NOW) + 3600})
JWT_EXPIRED = jwt({"sub": "user", "exp": int(NOW) - 60})


class Expected(NamedTuple):
    lifetime: int | None
    source: str | None
    expires_at: float | None
    refresh_token: str | None = None
    scopes: tuple[str, ...] | None = None


@pytest.mark.parametrize(
    ("payload", "now", "expected"),
    [
        pytest.param(
            {"access_token": ACCESS, "expires_in": 3600, "refresh_token": REFRESH},
            NOW,
            Expected(3600, "expires_in", NOW + 3600, refresh_token=REFRESH),
            id="with-refresh",
        ),
        pytest.param(
            {"access_token": ACCESS, "token_type": "Bearer", "expires_in": 3600},
            NOW,
            Expected(3600, "expires_in", NOW + 3600),
            id="without-refresh",
        ),
        pytest.param(
            {"access_token": ACCESS, "expires_in": "3600"},
            NOW,
            Expected(3600, "expires_in", NOW + 3600),
            id="expires-in-numeric-string",
        ),
        pytest.param(
            {"access_token": ACCESS, "expires_in": " 3600 "},
            NOW,
            Expected(3600, "expires_in", NOW + 3600),
            id="expires-in-padded-string",
        ),
        pytest.param(
            {"access_token": ACCESS, "expires_in": 3599.9},
            NOW,
            Expected(3599, "expires_in", NOW + 3599),
            id="expires-in-float-truncated",
        ),
        pytest.param(
            {"access_token": JWT_ONE_HOUR, "expires_in": 60},
            NOW,
            Expected(60, "expires_in", NOW + 60),
            id="expires-in-wins-over-jwt",
        ),
        pytest.param(
            {"access_token": JWT_ONE_HOUR},
            NOW,
            Expected(3600, "jwt_exp", float(int(NOW) + 3600)),
            id="jwt-exp-relative-to-now",
        ),
        pytest.param(
            {"access_token": JWT_ONE_HOUR},
            NOW + 600,
            Expected(3000, "jwt_exp", float(int(NOW) + 3600)),
            id="jwt-exp-later-now",
        ),
        pytest.param(
            {"access_token": JWT_EXPIRED},
            NOW,
            Expected(0, "jwt_exp", float(int(NOW) - 60)),
            id="jwt-already-expired",
        ),
        pytest.param({"access_token": ACCESS}, NOW, Expected(None, None, None), id="no-lifetime"),
        pytest.param(
            {"access_token": jwt({"sub": "user"})},
            NOW,
            Expected(None, None, None),
            id="jwt-without-exp",
        ),
        pytest.param(
            {"access_token": ACCESS, "refresh_token": REFRESH},
            NOW,
            Expected(None, None, None, refresh_token=REFRESH),
            id="refresh-without-lifetime",
        ),
        pytest.param(
            {"access_token": ACCESS, "expires_in": 3600, "scope": "openid email"},
            NOW,
            Expected(3600, "expires_in", NOW + 3600, scopes=("openid", "email")),
            id="granted-scope",
        ),
    ],
)
def test_success(payload: dict[str, Any], now: float, expected: Expected) -> None:
    for parsed in (
        parse_token_response(200, JSON, json.dumps(payload).encode(), now),
        token_set_from_payload(payload, now),
    ):
        assert parsed.access_token == payload["access_token"]
        assert parsed.token_type == "Bearer"
        assert parsed.refresh_token == expected.refresh_token
        assert parsed.lifetime_seconds == expected.lifetime
        assert parsed.lifetime_source == expected.source
        assert parsed.expires_at == expected.expires_at
        assert parsed.granted_scopes == expected.scopes


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        pytest.param("text/plain", body(access_token=ACCESS), id="text-plain"),
        pytest.param("text/javascript", body(access_token=ACCESS), id="text-javascript"),
        pytest.param("", body(access_token=ACCESS), id="no-content-type"),
    ],
)
def test_json_body_under_wrong_content_type_is_accepted(content_type: str, payload: bytes) -> None:
    assert parse_token_response(200, content_type, payload, NOW).access_token == ACCESS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param(3600, 3600, id="int"),
        pytest.param("3600", 3600, id="numeric-string"),
        pytest.param(" 3600 ", 3600, id="padded-string"),
        pytest.param("\t3600\n", 3600, id="whitespace-string"),
        pytest.param(3600.0, 3600, id="float"),
        pytest.param(1, 1, id="one-second"),
        pytest.param(MAX_EXPIRES_IN_SECONDS, MAX_EXPIRES_IN_SECONDS, id="ten-years"),
    ],
)
def test_parse_expires_in_accepts(value: Any, expected: int | None) -> None:
    assert parse_expires_in(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-3600.5, id="negative-float"),
        pytest.param("-3600", id="negative-string"),
        pytest.param(0, id="zero"),
        pytest.param(0.0, id="zero-float"),
        pytest.param("0", id="zero-string"),
        pytest.param(0.5, id="under-one-second"),
        pytest.param("0.5", id="under-one-second-string"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param("abc", id="abc"),
        pytest.param("", id="empty-string"),
        pytest.param("3600s", id="unit-suffix"),
        pytest.param("NaN", id="nan-string"),
        pytest.param(math.nan, id="nan-float"),
        pytest.param("inf", id="inf-string"),
        pytest.param(math.inf, id="inf-float"),
        pytest.param(MAX_EXPIRES_IN_SECONDS + 1, id="over-ten-years"),
        pytest.param(3_600_000_000, id="milliseconds-mixup"),
        pytest.param(str(MAX_EXPIRES_IN_SECONDS + 1), id="over-ten-years-string"),
        pytest.param([3600], id="list"),
        pytest.param({"seconds": 3600}, id="object"),
    ],
)
def test_parse_expires_in_rejects(value: Any) -> None:
    with pytest.raises(InvalidResponseError, match="expires_in"):
        parse_expires_in(value)


@pytest.mark.parametrize(
    "expires_in",
    [-1, 0, True, "abc", "NaN", MAX_EXPIRES_IN_SECONDS + 1],
    ids=["negative", "zero", "boolean", "abc", "nan", "absurd"],
)
def test_bad_expires_in_rejects_the_whole_response(expires_in: Any) -> None:
    payload = body(access_token=ACCESS, refresh_token=REFRESH, expires_in=expires_in)
    with pytest.raises(InvalidResponseError) as caught:
        parse_token_response(200, JSON, payload, NOW)
    assert ACCESS not in str(caught.value)
    assert REFRESH not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("openid email", ("openid", "email"), id="space-delimited"),
        pytest.param("  openid   email ", ("openid", "email"), id="extra-spaces"),
        pytest.param("openid,email", ("openid", "email"), id="comma"),
        pytest.param("openid, email", ("openid", "email"), id="comma-space"),
        pytest.param(["openid", "email"], ("openid", "email"), id="list"),
        pytest.param(["openid", "", "email"], ("openid", "email"), id="list-with-empty"),
        pytest.param("", (), id="empty-string"),
        pytest.param([], (), id="empty-list"),
        pytest.param(
            "https://www.googleapis.com/auth/drive.readonly",
            ("https://www.googleapis.com/auth/drive.readonly",),
            id="url-scope",
        ),
    ],
)
def test_parse_scope(value: Any, expected: tuple[str, ...] | None) -> None:
    assert parse_scope(value) == expected


@pytest.mark.parametrize("value", [42, {"scope": "openid"}, True], ids=["int", "object", "bool"])
def test_parse_scope_rejects(value: Any) -> None:
    with pytest.raises(InvalidResponseError, match="scope"):
        parse_scope(value)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(jwt({"exp": 1_700_003_600}), 1_700_003_600, id="int-exp"),
        pytest.param(jwt({"exp": 1_700_003_600.9}), 1_700_003_600, id="float-exp"),
        pytest.param(jwt({"sub": "user"}), None, id="no-exp"),
        pytest.param(jwt({"exp": "1700003600"}), None, id="string-exp"),
        pytest.param(jwt({"exp": True}), None, id="bool-exp"),
        pytest.param(jwt({"exp": None}), None, id="null-exp"),
        pytest.param(ACCESS, None, id="opaque"),
        pytest.param("a.b", None, id="two-parts"),
        pytest.param("a.b.c.d", None, id="four-parts"),
        pytest.param("a.!!!.c", None, id="not-base64"),
        pytest.param("a.bm90IGpzb24.c", None, id="not-json"),
        pytest.param("a.WzEsMl0.c", None, id="json-array"),
        pytest.param("a.é.c", None, id="non-ascii"),
        pytest.param("a./w.c", None, id="not-utf8"),
    ],
)
def test_jwt_expiry(token: str, expected: int | None) -> None:
    assert jwt_expiry(token) == expected


@pytest.mark.parametrize(
    ("status", "content_type", "payload"),
    [
        pytest.param(200, HTML, b"<html><body>Sign in</body></html>", id="200-html"),
        pytest.param(200, JSON, b"", id="200-empty"),
        pytest.param(200, JSON, b"\xff\xfe{", id="200-not-utf8"),
        pytest.param(200, JSON, json.dumps([{"access_token": ACCESS}]).encode(), id="200-array"),
        pytest.param(200, JSON, b'"ok"', id="200-string"),
        pytest.param(200, JSON, b"null", id="200-null"),
        pytest.param(200, JSON, body(token_type="Bearer", expires_in=3600), id="no-access-token"),
        pytest.param(200, JSON, body(access_token=""), id="empty-access-token"),
        pytest.param(200, JSON, body(access_token=12345), id="access-token-not-string"),
        pytest.param(200, JSON, body(access_token=ACCESS, token_type=1), id="token-type-number"),
        pytest.param(200, JSON, body(access_token=ACCESS, token_type=""), id="token-type-empty"),
        pytest.param(200, JSON, body(access_token=ACCESS, refresh_token=""), id="refresh-empty"),
        pytest.param(200, JSON, body(access_token=ACCESS, refresh_token=["x"]), id="refresh-list"),
        pytest.param(200, JSON, body(access_token=ACCESS, scope=7), id="scope-number"),
        pytest.param(400, JSON, body(message="bad request"), id="400-no-error-field"),
        pytest.param(400, JSON, body(error=""), id="400-empty-error"),
        pytest.param(400, JSON, body(error=42), id="400-error-not-string"),
        pytest.param(400, HTML, b"<html>Bad Request</html>", id="400-html"),
        pytest.param(403, JSON, b"[]", id="403-array"),
    ],
)
def test_invalid_response(status: int, content_type: str, payload: bytes) -> None:
    with pytest.raises(InvalidResponseError) as caught:
        parse_token_response(status, content_type, payload, NOW)
    assert type(caught.value) is InvalidResponseError
    assert caught.value.error == "invalid_response"


@pytest.mark.parametrize(
    ("status", "payload", "error_class", "error", "description"),
    [
        pytest.param(
            400,
            body(error="invalid_grant", error_description="Token has been expired or revoked."),
            InvalidGrantError,
            "invalid_grant",
            "Token has been expired or revoked.",
            id="400-invalid-grant",
        ),
        pytest.param(
            401, body(error="invalid_client"), InvalidClientError, "invalid_client", None, id="401"
        ),
        pytest.param(
            400,
            body(error="invalid_request"),
            InvalidRequestError,
            "invalid_request",
            None,
            id="ir",
        ),
        pytest.param(
            400, body(error="invalid_scope"), InvalidScopeError, "invalid_scope", None, id="scope"
        ),
        pytest.param(
            400,
            body(error="interaction_required", error_description="AADSTS50076"),
            OAuthError,
            "interaction_required",
            "AADSTS50076",
            id="unknown-code-kept",
        ),
        pytest.param(
            400,
            body(error="invalid_grant", error_description={"text": "nope"}),
            InvalidGrantError,
            "invalid_grant",
            None,
            id="description-not-string",
        ),
        pytest.param(
            400,
            body(error="temporarily_unavailable"),
            TemporarilyUnavailableError,
            "temporarily_unavailable",
            None,
            id="temporarily-unavailable",
        ),
        pytest.param(
            400,
            body(error="server_error"),
            TemporarilyUnavailableError,
            "server_error",
            None,
            id="oauth-server-error-code",
        ),
    ],
)
def test_oauth_error(
    status: int,
    payload: bytes,
    error_class: type[OAuthError],
    error: str,
    description: str | None,
) -> None:
    with pytest.raises(error_class) as caught:
        parse_token_response(status, JSON, payload, NOW)
    assert type(caught.value) is error_class
    assert caught.value.error == error
    assert caught.value.description == description
    assert str(caught.value) == (f"{error}: {description}" if description else error)


def test_oauth_error_keeps_uri() -> None:
    payload = body(error="invalid_grant", error_uri="https://example.com/errors#grant")
    with pytest.raises(InvalidGrantError) as caught:
        parse_token_response(400, JSON, payload, NOW)
    assert caught.value.uri == "https://example.com/errors#grant"


@pytest.mark.parametrize(
    ("status", "content_type", "payload", "retry_after", "error_class"),
    [
        pytest.param(500, JSON, body(error="server_error"), None, ServerError, id="500-json"),
        pytest.param(500, HTML, b"<html>Internal Server Error</html>", None, ServerError, id="500"),
        pytest.param(502, HTML, b"<html>Bad Gateway</html>", None, ServerError, id="502-html"),
        pytest.param(503, HTML, b"<html>Unavailable</html>", None, ServerError, id="503-html"),
        pytest.param(503, "", b"", None, ServerError, id="503-empty"),
        pytest.param(503, JSON, body(access_token=ACCESS), None, ServerError, id="503-token-body"),
        pytest.param(429, JSON, body(error="slow_down"), 30.0, RateLimitedError, id="429-hint"),
        pytest.param(429, HTML, b"<html>Too Many</html>", None, RateLimitedError, id="429-html"),
    ],
)
def test_transient_status(
    status: int,
    content_type: str,
    payload: bytes,
    retry_after: float | None,
    error_class: type[TransientError],
) -> None:
    with pytest.raises(error_class) as caught:
        parse_token_response(status, content_type, payload, NOW, retry_after=retry_after)
    assert type(caught.value) is error_class
    assert caught.value.retry_after == retry_after
    if isinstance(caught.value, ServerError):
        assert caught.value.status == status


@pytest.mark.parametrize(
    ("status", "payload", "transient", "terminal"),
    [
        pytest.param(500, b"<html/>", True, False, id="server-error"),
        pytest.param(429, b"", True, False, id="rate-limited"),
        pytest.param(400, body(error="temporarily_unavailable"), True, True, id="temp-unavail"),
        pytest.param(400, body(error="invalid_grant"), False, True, id="invalid-grant"),
        pytest.param(200, b"<html/>", False, True, id="invalid-response"),
    ],
)
def test_retryable_or_terminal(
    status: int, payload: bytes, transient: bool, terminal: bool
) -> None:
    with pytest.raises(TokenlifeError) as caught:
        parse_token_response(status, JSON, payload, NOW)
    assert isinstance(caught.value, TransientError) is transient
    assert isinstance(caught.value, ProviderError) is terminal


# Bodies that carry token values next to whatever makes them fail.
@pytest.mark.parametrize(
    ("status", "content_type", "payload"),
    [
        pytest.param(200, HTML, f"<p>{ACCESS} {REFRESH}</p>".encode(), id="html-echoing-tokens"),
        pytest.param(
            200,
            JSON,
            json.dumps([{"access_token": ACCESS, "refresh_token": REFRESH}]).encode(),
            id="array-of-token-sets",
        ),
        pytest.param(
            200,
            JSON,
            body(access_token=ACCESS, refresh_token=REFRESH, expires_in="soon"),
            id="bad-expires-in",
        ),
        pytest.param(
            200,
            JSON,
            body(access_token=ACCESS, refresh_token=REFRESH, expires_in=-5),
            id="negative-expires-in",
        ),
        pytest.param(
            200,
            JSON,
            body(access_token=ACCESS, refresh_token=REFRESH, expires_in=10**12),
            id="absurd-expires-in",
        ),
        pytest.param(
            200,
            JSON,
            body(access_token=ACCESS, refresh_token=REFRESH, token_type=1),
            id="bad-token-type",
        ),
        pytest.param(
            200, JSON, body(access_token=ACCESS, refresh_token=REFRESH, scope=1), id="bad-scope"
        ),
        pytest.param(
            200,
            JSON,
            body(access_token=ACCESS, refresh_token={"value": REFRESH}),
            id="refresh-token-not-string",
        ),
        pytest.param(
            200,
            JSON,
            body(access_token=[ACCESS], refresh_token=REFRESH),
            id="access-token-not-string",
        ),
        pytest.param(
            400,
            JSON,
            body(error="invalid_grant", access_token=ACCESS, refresh_token=REFRESH),
            id="error-with-tokens",
        ),
        pytest.param(
            400,
            JSON,
            body(access_token=ACCESS, refresh_token=REFRESH),
            id="no-error-field-with-tokens",
        ),
        pytest.param(502, HTML, f"{ACCESS} {REFRESH}".encode(), id="server-error-echoing-tokens"),
        pytest.param(
            429,
            JSON,
            body(access_token=ACCESS, refresh_token=REFRESH),
            id="rate-limited-echoing-tokens",
        ),
    ],
)
def test_error_messages_never_contain_token_values(
    status: int, content_type: str, payload: bytes
) -> None:
    with pytest.raises(TokenlifeError) as caught:
        parse_token_response(status, content_type, payload, NOW)
    shown = f"{caught.value} {caught.value!r} {caught.value.args!r}"
    assert ACCESS not in shown
    assert REFRESH not in shown


@pytest.mark.parametrize(
    "tokens",
    [
        pytest.param(
            parse_token_response(
                200, JSON, body(access_token=ACCESS, refresh_token=REFRESH, expires_in=60), NOW
            ),
            id="with-refresh",
        ),
        pytest.param(parse_token_response(200, JSON, body(access_token=ACCESS), NOW), id="bare"),
        pytest.param(
            TokenSet(
                access_token=ACCESS,
                token_type="Bearer",
                refresh_token=REFRESH,
                expires_at=None,
                lifetime_seconds=None,
                lifetime_source=None,
                granted_scopes=("openid",),
            ),
            id="constructed",
        ),
    ],
)
def test_token_set_repr_hides_tokens(tokens: TokenSet) -> None:
    for shown in (repr(tokens), str(tokens), f"{tokens}", repr([tokens])):
        assert ACCESS not in shown
        assert REFRESH not in shown
    assert f"has_refresh_token={tokens.refresh_token is not None}" in repr(tokens)


def test_a_jwt_exp_in_milliseconds_is_no_lifetime() -> None:
    now = 1_700_000_000.0
    payload = {"alg": "none"}
    claims = {"exp": int(now * 1000)}  # a millisecond timestamp: year 55000+
    token = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in (payload, claims)
        )
        + ".sig"
    )
    tokens = token_set_from_payload({"access_token": token}, now)
    assert tokens.lifetime_seconds is None and tokens.expires_at is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            b'{"error": "bad_verification_code", "error_description": "The code is wrong."}',
            "bad_verification_code",
            id="github-200-error",
        ),
        pytest.param(
            b'{"ok": false, "error": "invalid_code"}', "invalid_code", id="slack-ok-false"
        ),
        pytest.param(b'{"error": "invalid_grant"}', "invalid_grant", id="known-code"),
    ],
)
def test_an_error_answered_with_http_200_is_an_oauth_error(body: bytes, error: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_token_response(200, "application/json", body, 1_700_000_000.0)
    assert caught.value.error == error
