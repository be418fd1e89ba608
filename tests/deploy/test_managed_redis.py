"""A managed Redis as docs/deployment.md describes it: TLS (`rediss://` with
`ssl_cert_reqs=required` and a CA of its own) and AUTH as an ACL user limited to the key
prefix. A worker, beat and the API run on that one URL (storage, broker and Celery's
results), and a connection is made and refreshed by the schedule through them."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from celery import Celery
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.host_stack import VENV_BIN
from tests.fakes.base import Reply
from tests.redis_process import free_port
from tests.support import Fakes, client_app, consent, wait_for, worker_environment
from tokenlife.library import Tokenlife
from tokenlife.settings import Settings

pytestmark = pytest.mark.stack

PASSWORD = "p@ss:w/rd-0123456789"  # characters a URL must percent-encode
API_KEY = "managed-redis-api-key-0123456789"


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of our own and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenlife test CA")])
    ca = issue("tokenlife test CA", ca_key, ca_name, ca_key, ca=True)
    server = issue("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    return paths


@pytest.fixture
def managed_redis(tmp_path: Path) -> Iterator[tuple[int, Path, str]]:
    """redis-server with TLS only, the default user off and one ACL user for the prefix;
    (port, CA file, prefix). The first redis-server on the PATH built with TLS is used."""
    ca, cert, key = certificates(tmp_path)
    prefix = f"managed-{uuid.uuid4().hex[:8]}"
    port = free_port()
    argv = [
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        "--user", "default", "off",
        "--user", "tokenlife", "on", f">{PASSWORD}", f"~{prefix}:*", "&*", "+@all",
    ]  # fmt: skip
    candidates = [
        str(Path(d) / "redis-server") for d in os.environ["PATH"].split(os.pathsep)
        if (Path(d) / "redis-server").exists()
    ] or [shutil.which("redis-server") or "redis-server"]  # fmt: skip
    for executable in candidates:
        process = _start(executable, argv, port)
        if process is not None:
            break
    else:
        pytest.fail(f"no redis-server built with TLS on the PATH: {candidates}")
    try:
        yield port, ca, prefix
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_worker_beat_and_api_on_a_rediss_url_with_an_acl_user(
    managed_redis: tuple[int, Path, str], fakes: Fakes, tmp_path: Path
) -> None:
    port, ca, prefix = managed_redis
    url = (f"rediss://tokenlife:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0"
           f"?ssl_cert_reqs=required&ssl_ca_certs={ca}")  # fmt: skip
    integrations = tmp_path / "integrations.toml"
    integrations.write_text(f'''[integrations.google]
provider = "google"
client_id = "google-client"
client_secret = "google-secret"
redirect_uri = "{fakes.callback}"
authorize_url = "{fakes.google.base_url}/o/oauth2/v2/auth"
token_url = "{fakes.google.base_url}/token"
scopes = ["openid", "https://www.googleapis.com/auth/drive.readonly"]
''')
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=url, key_prefix=prefix, integrations_file=integrations,
        encryption_keys=(Fernet.generate_key().decode(),),
    )  # fmt: skip
    api_port = free_port()
    env = {
        **worker_environment(settings), "TOKENLIFE_API_KEYS": API_KEY,
        "TOKENLIFE_API_PORT": str(api_port), "TOKENLIFE_ALERT_WEBHOOK_URLS": "",
    }  # fmt: skip
    commands = {"worker": ["worker", "--no-beat", "--hostname", f"{prefix}@%h"],
                "beat": ["beat"], "api": ["api"]}  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    app = client_app(settings)
    try:
        for name, command in commands.items():
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    [str(VENV_BIN / "tokenlife"), *command], env=env, cwd=tmp_path,
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip

        def explain() -> str:
            return "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-3000:]}"
                             for n, p in logs.items())  # fmt: skip

        def up() -> bool:
            assert all(p.poll() is None for p in processes.values()), explain()
            return bool(app.control.ping(timeout=0.5))

        await asyncio.to_thread(wait_for, up, timeout=45, what="the worker over rediss://")
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:  # the API's readiness: Redis and the broker, both over TLS
                try:
                    async with http.get(f"http://127.0.0.1:{api_port}/readyz") as ready:
                        if ready.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, explain()
                await asyncio.sleep(0.1)

            async with Tokenlife.from_environment(settings) as tl:
                callback = await consent(tl, "google", "managed-user", login_hint="managed-user")
            fakes.google.script(callback["code"], Reply(lifetime=6))
            result = app.send_task("tokenlife.exchange_code", kwargs=callback)
            summary = await asyncio.to_thread(result.get, timeout=30)
            assert summary["status"] == "active", summary
            await asyncio.to_thread(
                wait_for, lambda: fakes.google.refreshes(callback["code"]) >= 1, timeout=30,
                what="beat's schedule to refresh the token over rediss://",
            )  # fmt: skip
            async with http.post(
                f"http://127.0.0.1:{api_port}/api/connections/google/managed-user/token",
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as token:
                assert token.status == 200, await token.text()
                assert fakes.google.access_users[(await token.json())["access_token"]] == (
                    "managed-user"
                )
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        _close(app)


def _close(app: Celery) -> None:
    """Close every socket the client app opened: app.close() drops its pools without
    closing them, and an unclosed TLS socket is a ResourceWarning (an error here)."""
    app.backend.result_consumer.stop()
    app.backend.client.connection_pool.disconnect()
    app.pool.force_close_all()
    app.close()


def _start(executable: str, argv: list[str], port: int) -> subprocess.Popen[bytes] | None:
    """The server listening on `port`, or None when this build refuses the options (a
    redis-server built without TLS exits at once)."""
    process = subprocess.Popen(
        [executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, timeout=10,
                 what="redis-server with TLS")  # fmt: skip
    except AssertionError:
        process.kill()
        process.wait()
        raise
    return process if process.poll() is None else None


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
