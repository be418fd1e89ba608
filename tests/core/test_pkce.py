"""PKCE (RFC 7636): the Appendix B vector and the verifier's length and alphabet (§4.1)."""

from __future__ import annotations

import re

import pytest

from tokenlife.core import pkce

# §4.1: code-verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")

# Appendix B: the octets of the example verifier, and what they and the challenge become.
APPENDIX_B_OCTETS = bytes(
    [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
     22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
)  # fmt: skip
APPENDIX_B_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
APPENDIX_B_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_method_is_s256() -> None:
    assert pkce.METHOD == "S256"


@pytest.mark.parametrize(
    ("verifier", "expected"),
    [
        pytest.param(APPENDIX_B_VERIFIER, APPENDIX_B_CHALLENGE, id="rfc7636-appendix-b"),
        # printf %043d 0 | tr 0 a | openssl dgst -sha256 -binary | basenc --base64url, minus "="
        pytest.param("a" * 43, "ZtNPunH49FD35FWYhT5Tv8I7vRKQJ8uxMaL0_9eHjNA", id="43-chars"),
    ],
)
def test_challenge(verifier: str, expected: str) -> None:
    assert pkce.challenge(verifier) == expected


def test_appendix_b_verifier_from_its_octets() -> None:
    assert pkce.verifier_from_bytes(APPENDIX_B_OCTETS) == APPENDIX_B_VERIFIER


@pytest.mark.parametrize(
    ("random_bytes", "length"),
    [
        pytest.param(b"\x00" * 32, 43, id="32-zero-bytes"),
        pytest.param(b"\xff" * 32, 43, id="32-ff-bytes"),
        pytest.param(bytes(range(33)), 44, id="33-bytes"),
        pytest.param(bytes(range(64)), 86, id="64-bytes"),
        pytest.param(b"\xfb\xff" * 48, 128, id="96-bytes"),
        pytest.param(bytes(range(256))[160:256], 128, id="96-high-bytes"),
    ],
)
def test_verifier_length_and_alphabet(random_bytes: bytes, length: int) -> None:
    verifier = pkce.verifier_from_bytes(random_bytes)
    assert len(verifier) == length
    assert VERIFIER.fullmatch(verifier)
    assert "=" not in verifier


@pytest.mark.parametrize(
    "size", [0, 1, 31, 97, 128], ids=["empty", "one", "31-bytes", "97-bytes", "128-bytes"]
)
def test_verifier_rejects_length(size: int) -> None:
    with pytest.raises(ValueError, match="32 to 96"):
        pkce.verifier_from_bytes(b"\x01" * size)
