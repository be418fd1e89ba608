"""The callback's parameters and RFC 9207 §2.4's issuer check, as tables."""

from __future__ import annotations

import dataclasses

import pytest

from tokenlife.core.integration import Integration
from tokenlife.integrations import IntegrationConfig, resolve
from tokenlife.providers import load_presets
from tokenlife.services.callback import check_callback, issuer_problem

ISSUER = "https://idp.example.com"


def integration(issuer: str | None, require_iss: bool = False) -> Integration:
    config = IntegrationConfig(
        provider="custom", client_id="id", client_secret="s",
        redirect_uri="https://app.example.com/cb", authorize_url="https://idp.example.com/a",
        token_url="https://idp.example.com/t",
    )  # fmt: skip
    resolved = resolve("it", config, load_presets()["custom"], "s", 30)
    return dataclasses.replace(resolved, issuer=issuer, require_iss=require_iss)


@pytest.mark.parametrize(
    ("state", "code", "error", "iss", "problem"),
    [
        ("s", "c", None, None, None),
        ("s", None, "access_denied", None, None),
        ("s", "c", None, ISSUER, None),
        ("", "c", None, None, "state"),
        ("s", "c", "access_denied", None, "exactly one"),
        ("s", None, None, None, "exactly one"),
        ("s", "c", None, "", "iss"),
        ("s", "c", None, 7, "iss"),
        ("s", "c", None, "x" * 2049, "iss"),
    ],
)
def test_check_callback(
    state: object, code: object, error: object, iss: object, problem: str | None
) -> None:
    found = check_callback(state, code, error, iss)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("issuer", "require_iss", "iss", "refused"),
    [
        pytest.param(ISSUER, False, ISSUER, False, id="same"),
        pytest.param(ISSUER, False, None, False, id="absent-not-promised"),
        pytest.param(ISSUER, True, None, True, id="absent-but-promised"),
        pytest.param(ISSUER, True, ISSUER, False, id="promised-and-sent"),
        pytest.param(ISSUER, False, "https://evil.example", True, id="other-server"),
        pytest.param(ISSUER, False, ISSUER + "/", True, id="trailing-slash"),
        pytest.param(ISSUER, False, "HTTPS://IDP.EXAMPLE.COM", True, id="case"),
        pytest.param(None, False, "https://anything.example", False, id="issuer-unknown"),
    ],
)
def test_issuer_problem(
    issuer: str | None, require_iss: bool, iss: str | None, refused: bool
) -> None:
    assert (issuer_problem(integration(issuer, require_iss), iss) is not None) is refused
