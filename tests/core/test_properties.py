"""Property tests: whatever a provider or a browser sends, parsing gives a result or one
of tokenlife's typed errors, never another exception (issue 9 §6)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlife.core.id_token import IdTokenClaims, parse_id_token
from tokenlife.core.tokens import TokenSet, parse_token_response
from tokenlife.errors import TokenlifeError
from tokenlife.services.callback import check_callback

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values of every type, including the ones a careless provider sends: numbers as
# strings, huge and negative numbers, NaN and infinities (Python's json reads them).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["3600", " 60 ", "1e309", "-5", "Bearer", "", "a b,c"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
TOKEN_KEYS = ["access_token", "token_type", "refresh_token", "expires_in", "scope",
              "id_token", "error", "error_description", "error_uri"]  # fmt: skip
token_objects = st.dictionaries(st.sampled_from(TOKEN_KEYS), json_values, max_size=len(TOKEN_KEYS))
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    token_objects.map(lambda v: json.dumps(v).encode()),
)
nows = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@FAST
@given(
    status=st.integers(min_value=100, max_value=599),
    content_type=st.text(max_size=30),
    body=bodies,
    now=nows,
    retry_after=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
def test_a_token_response_parses_or_raises_a_typed_error(
    status: int, content_type: str, body: bytes, now: float, retry_after: float | None
) -> None:
    try:
        result = parse_token_response(status, content_type, body, now, retry_after)
    except TokenlifeError:
        return
    assert isinstance(result, TokenSet)
    assert status == 200 and result.access_token
    assert result.lifetime_seconds is None or result.lifetime_seconds >= 0


anything = st.one_of(json_values, st.binary(max_size=20), st.text(min_size=0, max_size=600))


@FAST
@given(state=anything, code=anything, error=anything, iss=anything)
def test_a_callback_check_names_the_problem_or_accepts(
    state: Any, code: Any, error: Any, iss: Any
) -> None:
    problem = check_callback(state, code, error, iss)
    assert problem is None or isinstance(problem, str)
    if problem is None:  # what passes is what the exchange relies on
        assert isinstance(state, str) and state
        assert (code is None) != (error is None)
        assert iss is None or isinstance(iss, str)


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


CLAIM_KEYS = ["iss", "sub", "aud", "exp", "iat", "azp", "nonce"]
claim_objects = st.dictionaries(st.sampled_from(CLAIM_KEYS), json_values, max_size=len(CLAIM_KEYS))
payloads = st.one_of(
    claim_objects.map(lambda c: json.dumps(c).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
)
jwts = st.builds(
    lambda header, payload, signature: f"{_segment(header)}.{_segment(payload)}.{signature}",
    st.binary(max_size=20),
    payloads,
    st.text(max_size=10),
)
id_tokens = st.one_of(jwts, st.text(max_size=80), json_values)


@FAST
@given(
    id_token=id_tokens,
    client_id=st.sampled_from(["client", ""]) | st.text(max_size=8),
    issuer=st.none() | st.sampled_from(["https://issuer.example"]) | st.text(max_size=8),
    now=nows,
)
def test_an_id_token_parses_or_raises_a_typed_error(
    id_token: Any, client_id: str, issuer: str | None, now: float
) -> None:
    try:
        claims = parse_id_token(id_token, client_id=client_id, issuer=issuer, now=now)
    except TokenlifeError:
        return
    assert isinstance(claims, IdTokenClaims)
    assert 0 < len(claims.subject) <= 255
    assert issuer is None or claims.issuer == issuer


@FAST
@given(
    sub=st.text(min_size=1, max_size=255).filter(lambda s: s.isascii() and s.isprintable()),
    aud=st.sampled_from(["client", ["client"], ["other", "client"]]),
    exp=st.floats(min_value=1_000, max_value=4e9),
)
def test_a_well_formed_id_token_for_this_client_gives_its_subject(
    sub: str, aud: Any, exp: float
) -> None:
    claims = {"iss": "https://issuer.example", "sub": sub, "aud": aud, "exp": exp}
    token = f"{_segment(b'{}')}.{_segment(json.dumps(claims).encode())}.sig"

    parsed = parse_id_token(token, client_id="client", issuer="https://issuer.example", now=exp)

    assert parsed == IdTokenClaims(subject=sub, issuer="https://issuer.example")
