"""`tokenlife demo-provider`: its consent page, its answers to a person who says no, and
the integrations file it prints (right but for the one mistake the walkthrough makes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from tokenlife.cli import main
from tokenlife.demo.server import DemoSite

CALLBACK = "http://127.0.0.1:8080/oauth/callback"
GOOGLE = "/google/o/oauth2/v2/auth"
MICROSOFT = "/microsoft/common/oauth2/v2.0/authorize"


@pytest.fixture
async def demo() -> AsyncIterator[TestClient[Any, Any]]:
    site = DemoSite(base_url="http://127.0.0.1:8090", api_url="http://127.0.0.1:8080")
    async with TestClient(TestServer(site.app(), host="127.0.0.1")) as client:
        yield client


def request(client_id: str, **extra: str) -> dict[str, str]:
    return {"client_id": client_id, "redirect_uri": CALLBACK, "response_type": "code",
            "state": "s-123", **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        (GOOGLE, request("demo-google-client", scope="openid"),
         "This request carries no access_type and no prompt."),
        (GOOGLE, request("demo-google-client", scope="openid", access_type="offline",
                         prompt="consent"),
         "This request carries access_type=offline and prompt=consent."),
        (MICROSOFT, request("demo-microsoft-client", scope="openid offline_access"),
         "This request asks for offline_access."),
        (MICROSOFT, request("demo-microsoft-client", scope="openid"),
         "This request does not ask for offline_access."),
    ],
)  # fmt: skip
async def test_the_consent_page_says_what_the_request_carried(
    demo: TestClient[Any, Any], path: str, params: dict[str, str], says: str
) -> None:
    page = await demo.get(path, params=params, allow_redirects=False)
    assert page.status == 200
    text = await page.text()
    assert says in text
    assert "<button name=decision value=allow>" in text


async def test_cancel_sends_the_browser_back_with_access_denied(
    demo: TestClient[Any, Any],
) -> None:
    form = {**request("demo-google-client", scope="openid"), "decision": "deny"}
    answer = await demo.post(GOOGLE, data=form, allow_redirects=False)
    assert answer.status == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s-123"]
    assert "code" not in query


@pytest.mark.parametrize(
    "params",
    [
        request("demo-google-client", redirect_uri="http://evil.example/cb"),
        request("someone-else"),
    ],
)
async def test_an_unregistered_client_or_redirect_uri_gets_no_redirect(
    demo: TestClient[Any, Any], params: dict[str, str]
) -> None:
    for answer in (
        await demo.get(GOOGLE, params=params, allow_redirects=False),
        await demo.post(GOOGLE, data={**params, "decision": "allow"}, allow_redirects=False),
    ):
        assert answer.status == 400 and "Location" not in answer.headers


def test_it_listens_on_loopback_unless_told_otherwise() -> None:
    refused = CliRunner().invoke(main, ["demo-provider", "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "--allow-remote" in refused.output


def test_its_integrations_file_has_one_mistake(tmp_path: Path) -> None:
    printed = CliRunner().invoke(main, ["demo-provider", "--print-integrations"],
                                 env={"TOKENLIFE_API_PORT": "8181"})  # fmt: skip
    assert printed.exit_code == 0, printed.output
    assert 'redirect_uri = "http://127.0.0.1:8181/oauth/callback"' in printed.output
    path = tmp_path / "demo.toml"
    path.write_text(printed.output)
    checked = CliRunner().invoke(
        main, ["integrations", "check", "--json"],
        env={"TOKENLIFE_INTEGRATIONS_FILE": str(path), "TOKENLIFE_ENCRYPTION_KEYS": None},
    )  # fmt: skip
    findings = json.loads(checked.stdout)
    errors = [f for f in findings if f["severity"] == "error"]
    assert {f["integration"] for f in errors} == {"demo-google"}
    assert "use_catalogued_provider" in {f["code"] for f in errors}
    fixed = path.read_text().replace('provider = "custom"', 'provider = "google"')
    path.write_text(fixed)
    checked = CliRunner().invoke(main, ["integrations", "check"],
                                 env={"TOKENLIFE_INTEGRATIONS_FILE": str(path)})  # fmt: skip
    assert checked.exit_code == 0, checked.output
