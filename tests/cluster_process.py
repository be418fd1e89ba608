"""Real Redis deployments of a test's own on free ports: a three-master Redis Cluster, and a
master watched by one Sentinel. Each redis-server runs in its own process group, as in
tests/redis_process.py, so a stop is a SIGKILL of the group."""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import redis as sync_redis

from tests.redis_process import free_port
from tests.support import wait_for

SLOTS = 16384  # every hash slot of a Redis Cluster (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/)
# As tests/redis_process.py: no persistence, connections stored compactly.
_EPHEMERAL = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--protected-mode", "no", "--hash-max-ziplist-value", "1024")  # fmt: skip


class _Servers:
    """redis-server processes started under `directory`, each in its own process group."""

    def __init__(self, directory: Path, binary: str = "redis-server") -> None:
        self.directory = directory
        self.binary = binary
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, *arguments: str) -> None:
        process = subprocess.Popen(
            [self.binary, *arguments], cwd=self.directory,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=10)
        self.processes.clear()


class ClusterProcess:
    """Three masters, no replicas, the slots spread by `redis-cli --cluster create`."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        extra: tuple[str, ...] = (),
        binary: str = "redis-server",
    ) -> None:
        self.ports = [free_port() for _ in range(masters)]
        # The cluster bus listens on port + 10000 unless told otherwise, past 65535 for
        # much of the ephemeral range free_port draws from: a free port of its own instead
        # (`cluster-port`, Redis 7).
        self.bus_ports = [free_port() for _ in range(masters)]
        self.servers = _Servers(directory, binary)
        self.extra = extra  # more redis-server arguments, after the defaults

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> None:
        directory = self.servers.directory
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            self.servers.spawn(
                "--port", str(port), "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
                "--dir", str(directory), *_EPHEMERAL, *self.extra,
            )  # fmt: skip
        clients = [_client(port) for port in self.ports]
        try:
            for port, client in zip(self.ports, clients, strict=True):
                wait_for(partial(_answers, client), timeout=10, what=f"redis on {port}")
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            # `create` returns once the slots are assigned; the nodes agree a moment later
            # (gossip), and until then a node may answer CLUSTERDOWN.
            for port, client in zip(self.ports, clients, strict=True):
                wait_for(partial(_cluster_ok, client), timeout=20, what=f"cluster on {port}")
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        self.servers.stop()


class SentinelProcess:
    """One master and one Sentinel watching it as `mymaster` (quorum 1)."""

    service = "mymaster"

    def __init__(self, directory: Path) -> None:
        self.master_port = free_port()
        self.sentinel_port = free_port()
        self.servers = _Servers(directory)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/0"

    def start(self) -> None:
        directory = self.servers.directory
        self.servers.spawn("--port", str(self.master_port), "--dir", str(directory), *_EPHEMERAL)
        # Sentinel rewrites its configuration file, so it gets one of its own.
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\nprotected-mode no\n"
            f"dir {directory}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 1\n"
        )
        self.servers.spawn(str(config), "--sentinel")
        master, sentinel = _client(self.master_port), _client(self.sentinel_port)
        try:
            wait_for(lambda: _answers(master), timeout=10, what="the Sentinel's master")
            wait_for(lambda: _knows_master(sentinel, self.service), timeout=10,
                     what="the Sentinel to name its master")  # fmt: skip
        finally:
            master.close()
            sentinel.close()

    def stop(self) -> None:
        self.servers.stop()


def _client(port: int) -> sync_redis.Redis:
    return sync_redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2,
                            decode_responses=True)  # fmt: skip


def _answers(client: sync_redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (sync_redis.ConnectionError, sync_redis.exceptions.BusyLoadingError):
        return False


def _cluster_ok(client: sync_redis.Redis) -> bool:
    info = client.cluster("INFO")
    return bool(info["cluster_state"] == "ok" and info["cluster_slots_assigned"] == str(SLOTS))


def _knows_master(client: sync_redis.Redis, service: str) -> bool:
    try:
        return client.sentinel_get_master_addr_by_name(service) is not None
    except sync_redis.ConnectionError:
        return False
