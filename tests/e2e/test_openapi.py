"""The OpenAPI document against the app: the same routes both ways, served at /openapi.json,
and a bounded schemathesis run over every operation that finds no server error."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import hypothesis
import jsonschema
import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.specs.openapi.definitions import OPENAPI_31

from tests.support import Fakes, WorkerHandle, connect
from tokenlife.library import Tokenlife
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("tokenlife.web").joinpath("openapi.json").read_text()
)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
KEY = "openapi-fuzz-key-0123456789"
T = TypeVar("T")


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    # The OpenAPI 3.1 schema (2022-10-07) as schemathesis ships it, so nothing is downloaded.
    jsonschema.Draft202012Validator(OPENAPI_31).validate(DOCUMENT)
    for component in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(component)


async def test_the_document_and_the_app_have_the_same_routes(
    settings: Settings, fakes: Fakes
) -> None:
    runtime = await Runtime.open(await load_config(settings))
    try:
        app = create_app(runtime)
        # add_get also registers HEAD for each GET; the document leaves it implied. The
        # dashboard is HTML for browsers, described in docs/dashboard.md instead.
        registered = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None
            and not route.resource.canonical.startswith("/dashboard")
        }  # fmt: skip
        assert registered - documented_operations() == set(), "routes missing from the document"
        assert documented_operations() - registered == set(), "documented routes the app lacks"

        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.get("/openapi.json")
            assert response.status == 200 and response.content_type == "application/json"
            assert await response.json() == DOCUMENT
    finally:
        await runtime.close()


@contextmanager
def serving(app_settings: Settings) -> Iterator[str]:
    """The app over a real Runtime, on a loop in a thread of its own: schemathesis calls
    it synchronously, which would block a server running on the test's own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    async def start() -> tuple[Runtime, web.AppRunner]:
        runtime = await Runtime.open(await load_config(app_settings))
        runner = web.AppRunner(create_app(runtime), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runtime, runner

    async def stop(runtime: Runtime, runner: web.AppRunner) -> None:
        await runner.cleanup()
        await runtime.close()

    try:
        runtime, runner = run(start())
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            run(stop(runtime, runner))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def base_url(settings: Settings, fakes: Fakes, worker: WorkerHandle) -> Iterator[str]:
    # Every operation is fuzzed, /connect and /oauth/callback included. /connect only stores a
    # pending authorization (it expires). Each fuzzed /oauth/callback sends a real
    # exchange_code task, which the session's worker answers at once (no such state): the
    # callback's wait is cut from 30 s to 5 s so a busy worker can't stall the run.
    configured = settings.model_copy(
        update={
            "api_keys": (KEY,),
            "api_return_to_allowed": ("https://app.example.com/",),
            "api_callback_wait_seconds": 5.0,
        }
    )
    with serving(configured) as url:
        yield url


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@pytest.fixture
def example_connection(settings: Settings, worker: WorkerHandle, fakes: Fakes) -> None:
    """The document's example ids (google, user-42) name a live connection before each
    operation, so its examples reach the 200 and 202 answers, not only 404s."""

    async def seed() -> None:
        async with Tokenlife.from_environment(settings) as tl:
            await connect(tl, worker, "google", "user-42", login_hint="user-42")

    asyncio.run(seed())


def no_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """No 5xx but a 503 the document names for the operation (provider or Redis down, not
    ready); a documented 500 still fails."""
    operation = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    status = response.status_code
    if status >= 500 and not (status == 503 and "503" in operation["responses"]):
        raise AssertionError(f"server error {status}: {response.text[:500]}")
    return None


def shortened(wait: Any) -> Any:
    """A `wait` the app would accept, cut to 0.2 s; anything else as it is."""
    try:
        seconds = float(wait)
    except (TypeError, ValueError):
        return wait
    return 0.2 if 0.2 < seconds <= 30 else wait


schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,  # per operation: the whole run stays within seconds
    deadline=None,
    database=None,  # nothing written to .hypothesis/
    # example_connection is seeded once per operation, not per example, on purpose.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
def test_no_operation_answers_a_server_error(
    case: schemathesis.Case[Any], base_url: str, session: requests.Session, example_connection: None
) -> None:
    """Besides no_server_error, schemathesis's conformance checks hold the answers to the
    document (status codes, content types, headers, body schemas). Left out: its 5xx check
    (no_server_error allows a documented 503), and its checks that the app rejects what the
    document calls invalid and accepts what it calls valid: the app is lenient on purpose
    (an unknown `status` filter lists nothing), and no generated state or return_to can be
    valid (they need a pending authorization and a configured prefix)."""
    if case.operation.path == "/api/events" and isinstance(case.query, dict):
        # A long poll answers 200 whatever it waits; a short one keeps the run within
        # seconds (tests/e2e/test_api_events.py times the long polls).
        wait = case.query.get("wait")
        if isinstance(wait, list):
            case.query["wait"] = [shortened(w) for w in wait]
        elif wait is not None:
            case.query["wait"] = shortened(wait)
    case.call_and_validate(
        base_url=base_url,
        session=session,
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[not_a_server_error, negative_data_rejection, positive_data_acceptance],
        additional_checks=[no_server_error],
        timeout=15,
    )
