"""What the clients do with sockets: a `Client` used before a fork opens its own pool in
the child (a Celery prefork child, a Gunicorn worker) and leaves the parent's alone; a
transport passed in is the one used. The server is a real HTTP/1.1 server on 127.0.0.1
that answers GET /api/integrations with the port the request came from, so a test sees
which socket carried each request."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tokenlife.client import AsyncClient, Client

KEY = "fork-test-key-0123456789"


class PeerPort(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one socket carries request after request

    def do_GET(self) -> None:
        integration = {"name": str(self.client_address[1]), "provider": "custom", "scopes": []}
        body = json.dumps({"integrations": [integration]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PeerPort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def port_of(client: Client) -> int:
    (integration,) = client.integrations()
    return int(integration.name)


def test_a_forked_child_opens_its_own_socket_and_the_parents_stays(base_url: str) -> None:
    with Client(base_url, KEY) as client:
        parents = port_of(client)
        assert port_of(client) == parents  # kept alive
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, and leave without running pytest's teardown
            try:
                report = json.dumps({"ports": [port_of(client), port_of(client)]})
            except BaseException as exc:
                report = json.dumps({"error": repr(exc)})
            finally:
                os.write(write, report.encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            child = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert "error" not in child, child["error"]
        first, second = child["ports"]
        assert first == second != parents  # a socket of its own, kept alive in turn
        assert port_of(client) == parents  # the parent's socket, untouched by the child


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.url.path)
        return super().handle_request(request)


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.url.path)
        return await super().handle_async_request(request)


def test_a_transport_passed_in_carries_the_requests(base_url: str) -> None:
    transport = CountingTransport()
    with Client(base_url, KEY, transport=transport) as client:
        client.integrations()
        client.integrations()
    assert transport.sent == ["/api/integrations", "/api/integrations"]


async def test_an_async_transport_passed_in_carries_the_requests(base_url: str) -> None:
    transport = AsyncCountingTransport()
    async with AsyncClient(base_url, KEY, transport=transport) as client:
        (integration,) = await client.integrations()
    assert int(integration.name) > 0
    assert transport.sent == ["/api/integrations"]


def test_the_key_is_sent_as_a_bearer_token_and_nowhere_else(base_url: str) -> None:
    seen: list[httpx.Request] = []
    # The caller's client has an auth of its own, for other services: not used here.
    with httpx.Client(auth=("someone", "else"), event_hooks={"request": [seen.append]}) as mine:
        Client(base_url, KEY, http_client=mine).integrations()
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(request.url)
