"""Scale under load (issue 12, "Measure first", measurements 4 and 5), run by bench/scale.py.

A redis-server of its own on a free port (`--save "" --appendonly no
--hash-max-ziplist-value 1024`), the fake token endpoint (bench/fake_token_endpoint.py) in
its own process on 127.0.0.1, and real workers: `celery -A tokenlife.worker worker --beat
--concurrency P`, as bench/refresh_throughput.py runs them (provider_concurrency 1000,
refresh_batch_size 100, the beat's tick TOKENLIFE_REFRESH_DUE_INTERVAL_SECONDS 1 s).

4. lag: RATE x SECONDS connections (integration `bench`, provider `custom`, tokens
   Fernet-encrypted, saved by save_connection.lua pipelined), first scheduled far ahead;
   once the workers (2 processes) answer a ping, their due times are set (schedule score and
   `next_refresh_at`) spread evenly over SECONDS from 10 s ahead, so RATE come due every
   second. The run ends when every one is refreshed or GRACE seconds after the last due
   time. Lag: each connection's `token.refreshed` event's `occurred_at` (the event stream,
   read after the run; its cap raised to hold them all) minus the due time seeded.
5. scale-out: a burst: N connections made due at once with P worker processes, P = 1, 2, 4;
   timed from the first claim to the last `token.refreshed`, as refresh_throughput does.
   Redis commands per refresh: INFO commandstats after minus before, less the bench's own
   commands (the due times it writes, its polls), divided by N; Redis's CPU per refresh
   from /proc. Redis's ceiling: redis-benchmark (SET and GET, 50 clients, unpipelined and
   -P 16) against the same server afterwards.

On a Redis Cluster (`run(..., cluster_scale_out=, cluster_lag_seconds=)`): the same, with
three masters started as tests/cluster_process.py starts them for `make test-cluster`, and
the one redis-server as Celery's broker (a Cluster can't be one). Commands and CPU are
summed over every server and reported per server; Redis's limit is the busiest server's
CPU per refresh. MONITOR (commands by origin) runs on one Redis only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis as sync_redis
from cryptography.fernet import Fernet
from redis.cluster import RedisCluster
from tests.cluster_process import ClusterProcess

from bench.refresh_throughput import (
    environment,
    free_port,
    newest_event,
    process,
    tree_cpu,
    wait_for_ping,
    wait_port,
)
from bench.refresh_throughput import make_due as set_due
from tokenlife.adapters import scripts
from tokenlife.adapters.connection_record import connection_fields, save_args, save_keys
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.adapters.redis_client import connect
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import token_set_from_payload
from tokenlife.settings import Settings

INTEGRATION, PROVIDER = "bench", "custom"
LAG_RATE = 280.0  # 1,000,000 connections / 3,600 s: one refresh per token-hour each
LAG_SECONDS = 120.0
LAG_PROCESSES = 2
LAG_LEAD = 10.0  # the first connection comes due this long after its due times are set
LAG_GRACE = 15.0
TARGET_LAG_P99 = 2.0
SCALE_OUT_PROCESSES = (1, 2, 4)
BURST = 20_000
MONITORED = 2_000
SEED_BATCH = 1_000
DUE_BATCH = 5_000
NOT_DUE = 1e12
POLL_SECONDS = 0.05
BATCH_SIZE, PROVIDER_CONCURRENCY = 100, 1000


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Stack:
    redis_url: str
    nodes: list[tuple[int, int]]  # (port, pid) of each redis-server holding tokenlife's keys
    broker: tuple[int, int] | None  # a Cluster's: Celery's Redis, which the URL can't be
    endpoint_pid: int
    token_url: str
    integrations: Path
    key: str
    work: Path

    @property
    def cluster(self) -> bool:
        return self.broker is not None

    def settings(self, prefix: str, events: int = 100_000) -> Settings:
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            redis_url=self.redis_url,
            broker_url=None if self.broker is None else f"redis://127.0.0.1:{self.broker[0]}/0",
            key_prefix=prefix,
            encryption_keys=(self.key,),
            integrations_file=self.integrations,
            provider_concurrency=PROVIDER_CONCURRENCY,
            refresh_batch_size=BATCH_SIZE,
            events_max_length=max(100_000, events),
        )

    def client(self) -> sync_redis.Redis:
        """The bench's own client: one server's, or a Cluster's routing by key."""
        if not self.cluster:
            return sync_redis.Redis(port=self.nodes[0][0], decode_responses=True)
        cluster = RedisCluster(host="127.0.0.1", port=self.nodes[0][0], decode_responses=True)
        return cast(sync_redis.Redis, cluster)  # as redis_client.connect types it

    @property
    def ports(self) -> list[int]:
        """Every server's, the broker's included: what INFO and FLUSHALL address."""
        return [port for port, _ in self.nodes] + ([self.broker[0]] if self.broker else [])

    def node_clients(self) -> list[sync_redis.Redis]:
        return [sync_redis.Redis(port=port, decode_responses=True) for port in self.ports]

    def flush(self) -> None:
        for client in self.node_clients():
            client.flushall()
            client.close()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: every data node's together as `redis`; on a Cluster each
        node's as well (`redis[i]`), and the broker's."""
        nodes = [tree_cpu(pid) for _, pid in self.nodes]
        cpu = {"redis": sum(nodes), "endpoint": tree_cpu(self.endpoint_pid)}
        if self.broker is not None:
            cpu |= {f"redis[{i}]": spent for i, spent in enumerate(nodes)}
            cpu["broker"] = tree_cpu(self.broker[1])
        return cpu


@contextmanager
def stack(
    work: Path, redis_binary: str, redis_args: list[str], cluster: bool = False
) -> Iterator[Stack]:
    """One redis-server; or, with `cluster`, a three-master Redis Cluster (as
    `make test-cluster` starts it: tests/cluster_process.py) and that one redis-server as
    the broker (docs/cluster.md: Celery can't use a Cluster)."""
    redis_port, token_port = free_port(), free_port()
    token_url = f"http://127.0.0.1:{token_port}/token"
    integrations = work / "load-integrations.toml"
    integrations.write_text(
        f'[integrations.{INTEGRATION}]\nprovider = "{PROVIDER}"\nclient_id = "bench-client"\n'
        'client_secret = "bench-secret"\nredirect_uri = "http://127.0.0.1/callback"\n'
        f'authorize_url = "http://127.0.0.1:{token_port}/authorize"\ntoken_url = "{token_url}"\n'
    )
    redis_argv = [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1",
                  "--save", "", "--appendonly", "no", "--hash-max-ziplist-value", "1024",
                  *redis_args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    endpoint = [sys.executable, "-m", "bench.fake_token_endpoint", str(token_port)]
    with (
        process(redis_argv, env, work / "load-redis.log") as redis_proc,
        process(endpoint, env, work / "load-endpoint.log") as endpoint_proc,
        ExitStack() as started,
    ):
        wait_port(redis_port)
        wait_port(token_port)
        single = (redis_port, redis_proc.pid)
        url, nodes, broker = f"redis://127.0.0.1:{redis_port}/0", [single], None
        if cluster:
            (work / "cluster").mkdir(exist_ok=True)
            servers = ClusterProcess(work / "cluster", extra=tuple(redis_args), binary=redis_binary)
            started.callback(servers.stop)
            servers.start()
            url, broker = servers.url, single
            nodes = [
                (port, proc.pid)
                for port, proc in zip(servers.ports, servers.servers.processes, strict=True)
            ]
        yield Stack(url, nodes, broker, endpoint_proc.pid, token_url, integrations,
                    Fernet.generate_key().decode(), work)  # fmt: skip


async def seed(settings: Settings, n: int) -> None:
    """N connections through save_connection.lua (TokenStore.save's KEYS and ARGV),
    pipelined, scheduled far ahead: nothing is due until make_due says so."""
    redis = connect(settings.redis_url)
    keys, cipher = Keys(settings.key_prefix), Cipher(settings.encryption_keys)
    save = scripts.register(redis, "save_connection")
    await save.load()  # else each pipeline of a fresh server would run it again, one by one
    now = time.time()
    try:
        for start in range(0, n, SEED_BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(n, start + SEED_BATCH)):
                    body = {"access_token": f"at-seed-{i}", "refresh_token": f"rt-seed-{i}",
                            "token_type": "Bearer", "expires_in": 3600}  # fmt: skip
                    fields = connection_fields(
                        INTEGRATION, f"c{i}", PROVIDER, token_set_from_payload(body, now),
                        cipher, verdict=Verdict.REFRESHABLE, status=Status.ACTIVE,
                        scopes_requested=("openid",), next_check_at=NOT_DUE, now=now,
                    )  # fmt: skip
                    await save(
                        keys=save_keys(keys, INTEGRATION, f"c{i}", None, PROVIDER),
                        args=[
                            *save_args(keys, INTEGRATION, f"c{i}", now, NOT_DUE, fields, None),
                            "", "[]", "", "{}", "[]", "{}", settings.events_max_length, 0, "",
                        ],
                        client=pipe,
                    )  # fmt: skip
                await scripts.execute(pipe)
    finally:
        await redis.aclose()


def make_due(client: sync_redis.Redis, prefix: str, due: list[float]) -> Counter[str]:
    """Connection i comes due at due[i] (its schedule score and its `next_refresh_at`);
    returns the commands sent, by name, to leave out of Redis's counts."""
    sent: Counter[str] = Counter()
    keys = Keys(prefix)
    for start in range(0, len(due), DUE_BATCH):
        chunk = range(start, min(len(due), start + DUE_BATCH))
        set_due(client, keys, {(INTEGRATION, f"c{i}"): due[i] for i in chunk})
        shards = len({keys.shard(INTEGRATION, f"c{i}") for i in chunk})
        sent.update({"hset": len(chunk), "zadd": shards})
    return sent


@contextmanager
def workers(
    settings: Settings, processes: int, work: Path, name: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "celery", "-A", "tokenlife.worker", "worker", "--beat",
            "--concurrency", str(processes), "--loglevel", "WARNING", "--without-gossip",
            "--without-mingle", "--schedule", str(work / f"beat-{name}"),
            "--hostname", f"{name}@%h"]  # fmt: skip
    full_env = {**environment(settings), **(env or {}),
                "TOKENLIFE_EVENTS_MAX_LENGTH": str(settings.events_max_length)}  # fmt: skip
    with process(argv, full_env, work / f"workers-{name}.log") as proc:
        wait_for_ping(settings)
        yield proc


def refreshed(client: sync_redis.Redis, prefix: str) -> int:
    return int(client.hget(f"{prefix}:counters", f"refresh:{PROVIDER}:refreshed") or 0)


def event_times(client: sync_redis.Redis, prefix: str) -> dict[str, float]:
    """connection id -> occurred_at of its first token.refreshed, read in pages."""
    times: dict[str, float] = {}
    for shard in Keys(prefix).all_shards:
        _shard_event_times(client, Keys(prefix).events(shard), times)
    return times


def _shard_event_times(client: sync_redis.Redis, stream: str, times: dict[str, float]) -> None:
    start = "-"
    while True:
        page: list[tuple[str, dict[str, str]]]
        page = client.xrange(stream, min=start, count=10_000)  # type: ignore[assignment]
        for _, fields in page:
            if fields["type"] != "token.refreshed":
                continue
            data = json.loads(fields["data"])
            at = datetime.fromisoformat(data["occurred_at"].replace("Z", "+00:00")).timestamp()
            times.setdefault(data["connection_id"], at)
        if len(page) < 10_000:
            return
        start = "(" + page[-1][0]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_lag(
    stack: Stack, rate: float, seconds: float, interval: float | None = None
) -> dict[str, Any]:
    n = round(rate * seconds)
    prefix = "lag" if interval is None else f"lag-{interval:g}"
    settings = stack.settings(prefix, events=2 * n)
    stack.flush()
    client = stack.client()
    started = time.monotonic()
    asyncio.run(seed(settings, n))
    say(f"lag: {n} connections seeded in {time.monotonic() - started:.1f} s; workers")
    env = {} if interval is None else {"TOKENLIFE_REFRESH_DUE_INTERVAL_SECONDS": str(interval)}
    with workers(settings, LAG_PROCESSES, stack.work, prefix, env) as worker:
        first = time.time() + LAG_LEAD
        due = [first + seconds * i / n for i in range(n)]
        make_due(client, prefix, due)
        spare = first - time.time()
        assert spare > 0, "the due times were set after the first came due"
        time.sleep(spare)
        before = {**stack.cpu(), "workers": tree_cpu(worker.pid)}
        window_start = time.time()
        deadline = due[-1] + LAG_GRACE
        say(f"lag: {rate:g}/s for {seconds:g} s from now")
        while refreshed(client, prefix) < n and time.time() < deadline:
            time.sleep(1.0)
        window = time.time() - window_start
        after = {**stack.cpu(), "workers": tree_cpu(worker.pid)}
    times = event_times(client, prefix)
    client.close()
    lags = [times[f"c{i}"] - due[i] for i in range(n) if f"c{i}" in times]
    missing = n - len(lags)
    cpu = {k: after[k] - before[k] for k in after}
    # Each 10 s of due times: how many were due, their p99 lag; and refreshes per second.
    buckets: dict[int, list[float]] = {}
    for i in range(n):
        if f"c{i}" in times:
            buckets.setdefault(int((due[i] - first) // 10), []).append(times[f"c{i}"] - due[i])
    done = sorted(times.values())
    span = done[-1] - done[0] if len(done) > 1 else float("nan")
    result = {
        "rate_per_s": rate,
        "seconds": seconds,
        "connections": n,
        "worker_processes": LAG_PROCESSES,
        "due_interval_seconds": 1.0 if interval is None else interval,
        "refreshed": len(lags),
        "not_refreshed_by_end": missing,
        "end_seconds_after_last_due": round(window - seconds, 1),
        "lag_s": {
            "p50": round(quantile(lags, 0.50), 3),
            "p90": round(quantile(lags, 0.90), 3),
            "p99": round(quantile(lags, 0.99), 3),
            "max": round(max(lags), 3),
            "min": round(min(lags), 3),
            "mean": round(statistics.mean(lags), 3),
        }
        if lags
        else None,
        "over_2s": sum(1 for lag in lags if lag > TARGET_LAG_P99),
        "target_p99_s": TARGET_LAG_P99,
        "refreshed_per_s_achieved": round((len(done) - 1) / span, 1) if span == span else None,
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        # A Cluster's `redis` is its masters' `redis[i]` summed: counted once.
        "cores_busy": round(sum(v for k, v in cpu.items() if "[" not in k) / window, 2),
        "cpu_us_per_refresh": {k: round(v * 1e6 / max(1, len(lags))) for k, v in cpu.items()},
        "p99_by_10s_of_due_times": [round(quantile(buckets[b], 0.99), 3) for b in sorted(buckets)],
        "lags_for_plot": [round(x, 4) for x in lags],
    }
    return result


def command_calls(stack: Stack) -> list[dict[str, tuple[int, int]]]:
    """Calls and microseconds by command of each server, in `stack.ports` order (a
    Cluster's broker last, as the one Redis carries Celery's traffic too)."""
    servers = []
    for client in stack.node_clients():
        stats: dict[str, Any] = client.info("commandstats")
        client.close()
        servers.append({name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
                        for name, v in stats.items()})  # fmt: skip
    return servers


def _summed(servers: list[dict[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    total: dict[str, tuple[int, int]] = {}
    for stats in servers:
        for name, (calls, usec) in stats.items():
            was = total.get(name, (0, 0))
            total[name] = (was[0] + calls, was[1] + usec)
    return total


def _top_by_server(
    before: list[dict[str, tuple[int, int]]], after: list[dict[str, tuple[int, int]]], n: int
) -> list[dict[str, float]]:
    """Each server's six most called commands per refresh (scripts' own commands included)."""
    tops = []
    for was, now in zip(before, after, strict=True):
        calls = {k: (c - was.get(k, (0, 0))[0]) / n for k, (c, _) in now.items()}
        best = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
        tops.append({k: round(v, 2) for k, v in best if v > 0})
    return tops


def _usec_by_server(
    before: list[dict[str, tuple[int, int]]], after: list[dict[str, tuple[int, int]]], n: int
) -> list[float]:
    """Each server's time inside commands per refresh (INFO commandstats usec): where a
    Cluster's work lands. The bench's own commands are in it: make_due's HSET and ZADD
    member per refresh, on the server of the connection's shard."""
    spent = []
    for was, now in zip(before, after, strict=True):
        usec = sum(u for _, u in now.values()) - sum(u for _, u in was.values())
        spent.append(round(usec / n, 1))
    return spent


def measure_burst(stack: Stack, processes: int, n: int) -> dict[str, Any]:
    prefix = f"burst-{processes}"
    settings = stack.settings(prefix, events=2 * n)
    stack.flush()
    client = stack.client()
    asyncio.run(seed(settings, n))
    counter = f"{prefix}:counters"
    with workers(settings, processes, stack.work, prefix) as worker:
        before_calls = command_calls(stack)
        sent = make_due(client, prefix, [time.time()] * n)
        # The clock starts at the first claim, as the pipeline's own work begins there.
        waits = time.monotonic() + 60
        while not client.hexists(counter, "refresh:claimed"):
            sent["hexists"] += 1
            if time.monotonic() > waits:
                raise RuntimeError(f"burst with {processes} processes: nothing claimed")
            time.sleep(0.02)
        sent["hexists"] += 1
        started = time.time()
        cpu_before = {**stack.cpu(), "workers": tree_cpu(worker.pid)}
        polls = 0
        deadline = time.monotonic() + 900
        while refreshed(client, prefix) < n:
            polls += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"burst with {processes} processes: gave up")
            time.sleep(POLL_SECONDS)
        cpu_after = {**stack.cpu(), "workers": tree_cpu(worker.pid)}
        after_calls = command_calls(stack)
        finished = newest_event(client, Keys(prefix))["occurred_at"]
    ended = datetime.fromisoformat(finished.replace("Z", "+00:00")).timestamp()
    client.close()
    sent["hget"] += polls + 1
    sent["info"] += len(stack.ports)
    delta: dict[str, int] = {}
    usec = 0
    before_total, after_total = _summed(before_calls), _summed(after_calls)
    for name, (calls, spent) in after_total.items():
        was_calls, was_usec = before_total.get(name, (0, 0))
        delta[name] = calls - was_calls - sent.get(name, 0)
        usec += spent - was_usec
    delta = {k: v for k, v in delta.items() if v > 0}
    ops = sum(delta.values())
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    rate = n / (ended - started)
    return {
        "worker_processes": processes,
        "connections": n,
        "refreshed_per_s": round(rate, 1),
        "redis_ops_per_refresh": round(ops / n, 2),
        "redis_commands_per_refresh": {
            k: round(v / n, 2) for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
        },
        "redis_usec_per_refresh_commandstats": round(usec / n, 1),
        "redis_usec_per_refresh_by_server": _usec_by_server(before_calls, after_calls, n),
        "redis_commands_per_refresh_by_server": _top_by_server(before_calls, after_calls, n),
        "cpu_us_per_refresh": {k: round(v * 1e6 / n) for k, v in cpu.items()},
        "redis_ops_per_s": round(ops / n * rate),
    }


def monitored_burst(stack: Stack, processes: int, n: int) -> dict[str, Any]:
    """A burst of n with `redis-cli monitor` recording (untimed: MONITOR slows Redis):
    the commands per refresh that workers send (round trips, pipelined or not) apart from
    those their Lua scripts run inside Redis; the bench's own are left out by address."""
    prefix = f"monitor-{processes}"
    settings = stack.settings(prefix, events=2 * n)
    stack.flush()
    client = stack.client()
    asyncio.run(seed(settings, n))
    own = str(client.client_info()["addr"])
    log = stack.work / "monitor.log"
    argv = [shutil.which("redis-cli") or "redis-cli", "-p", str(stack.nodes[0][0]), "monitor"]
    with workers(settings, processes, stack.work, prefix), process(argv, dict(os.environ), log):
        time.sleep(0.5)
        make_due(client, prefix, [time.time()] * n)
        deadline = time.monotonic() + 300
        while refreshed(client, prefix) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    client.close()
    sent: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            where, _, rest = line.partition("] ")
            if not rest or f" {own}" in where:
                continue
            name = rest.split(" ", 1)[0].strip().strip('"').lower()
            (inside if where.endswith(" lua") else sent)[name] += 1
    return {
        "connections": n,
        "worker_processes": processes,
        "sent_by_clients_per_refresh": round(sum(sent.values()) / n, 2),
        "run_inside_lua_per_refresh": round(sum(inside.values()) / n, 2),
        "sent_by_clients": {k: round(v / n, 2) for k, v in sent.most_common(12)},
        "lua_scripts_called": {k: round(v / n, 2) for k, v in sent.items() if "eval" in k},
    }


def redis_ceiling(port: int, cluster: bool = False) -> dict[str, Any]:
    """redis-benchmark SET and GET, 50 clients, 200,000 requests, unpipelined and -P 16;
    on a Cluster with `--cluster`, which spreads the keys over every master."""
    found = shutil.which("redis-benchmark") or "redis-benchmark"
    mode = ["--cluster"] if cluster else []
    out: dict[str, Any] = {
        "tool": f"{found} {' '.join(mode)} -t set,get -n 200000 -c 50 [-P 16] --csv"
    }
    for label, extra in (("unpipelined", []), ("pipelined_16", ["-P", "16"])):
        argv = [found, *mode, "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
                "-n", "200000", "-c", "50", "--csv", *extra]  # fmt: skip
        text = subprocess.run(argv, capture_output=True, text=True, timeout=300).stdout
        rows = [line.replace('"', "").split(",") for line in text.splitlines()]
        out[label] = {r[0]: round(float(r[1])) for r in rows if r and r[0] in ("SET", "GET")}
    return out


def measure_scale_out(stack: Stack, processes: list[int], n: int) -> dict[str, Any]:
    runs = []
    where = "a Redis Cluster" if stack.cluster else "one Redis"
    for p in processes:
        say(f"scale-out on {where}: {n} due at once, {p} worker process(es)")
        runs.append(measure_burst(stack, p, n))
        say(f"scale-out: {p}: {runs[-1]['refreshed_per_s']}/s, "
            f"{runs[-1]['redis_ops_per_refresh']} Redis ops per refresh")  # fmt: skip
    result: dict[str, Any] = {"topology": "cluster" if stack.cluster else "single", "runs": runs}
    if not stack.cluster:
        # MONITOR on one server tells the bench's connections by address; a Cluster's
        # commands by origin are those of one Redis (the same scripts, routed by key).
        say("scale-out: commands by origin (MONITOR, untimed)")
        result["commands_by_origin"] = monitored_burst(stack, LAG_PROCESSES, MONITORED)
    stack.flush()
    say(f"scale-out: redis-benchmark on {where}")
    ceiling = redis_ceiling(stack.nodes[0][0], stack.cluster)
    get_set = ceiling["unpipelined"]
    ops_ceiling = min(get_set.values()) if get_set else None
    best = max(runs, key=lambda r: r["refreshed_per_s"])
    cpu = best["cpu_us_per_refresh"]
    # Redis runs commands on one thread per server: the busiest server is full first.
    busiest = (
        max(cpu[f"redis[{i}]"] for i in range(len(stack.nodes))) if stack.cluster else cpu["redis"]
    )
    sent = result.get("commands_by_origin", {}).get("sent_by_clients_per_refresh")
    result["redis_ceiling"] = ceiling
    result["where_redis_limits"] = {
        "ops_ceiling_unpipelined_per_s": ops_ceiling,
        "ops_per_refresh_all": best["redis_ops_per_refresh"],
        "ops_per_refresh_sent": sent,
        "refreshes_per_s_at_ops_ceiling_all": round(ops_ceiling / best["redis_ops_per_refresh"])
        if ops_ceiling
        else None,
        "refreshes_per_s_at_ops_ceiling_sent": round(ops_ceiling / sent)
        if ops_ceiling and sent
        else None,
        "redis_cpu_us_per_refresh": cpu["redis"],
        "busiest_server_cpu_us_per_refresh": busiest,
        "refreshes_per_s_at_one_redis_core": round(1e6 / busiest) if busiest else None,
        "redis_share_of_one_core_at_best": round(best["refreshed_per_s"] * busiest / 1e6, 2),
    }
    return result


def run(
    work: Path,
    redis_binary: str,
    redis_args: list[str],
    *,
    lag_seconds: float | None,
    lag_rate: float,
    lag_intervals: list[float],
    scale_out: list[int],
    burst: int,
    cluster_lag_seconds: float | None = None,
    cluster_scale_out: list[int] | None = None,
) -> dict[str, Any]:
    """The single-Redis results at the top level; a Cluster's under `cluster`, from a second
    stack started after the first has stopped, so the two never share the cores."""
    results: dict[str, Any] = {"load_redis_binary": redis_binary}
    if lag_seconds or scale_out:
        with stack(work, redis_binary, redis_args) as load:
            results |= _load(load, lag_seconds, lag_rate, lag_intervals, scale_out, burst)
    if cluster_lag_seconds or cluster_scale_out:
        with stack(work, redis_binary, redis_args, cluster=True) as load:
            results["cluster"] = _load(load, cluster_lag_seconds, lag_rate, [],
                                       cluster_scale_out or [], burst)  # fmt: skip
    return results


def _load(
    load: Stack,
    lag_seconds: float | None,
    lag_rate: float,
    lag_intervals: list[float],
    scale_out: list[int],
    burst: int,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if lag_seconds:
        started = time.monotonic()
        results["lag"] = measure_lag(load, lag_rate, lag_seconds)
        results["lag"]["bench_seconds"] = round(time.monotonic() - started, 1)
        say(f"lag: {json.dumps(results['lag']['lag_s'])}, "
            f"{results['lag']['not_refreshed_by_end']} not refreshed")  # fmt: skip
        for interval in lag_intervals:
            results.setdefault("lag_by_interval", []).append(
                measure_lag(load, lag_rate, lag_seconds, interval)
            )
    if scale_out:
        started = time.monotonic()
        results["scale_out"] = measure_scale_out(load, scale_out, burst)
        results["scale_out"]["bench_seconds"] = round(time.monotonic() - started, 1)
    return results


def plot(pyplot: Any, results: dict[str, Any], directory: Path, stamp: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    lag = results.get("lag")
    if lag and lag["lags_for_plot"]:
        figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4.2))
        values = sorted(lag["lags_for_plot"])
        left.plot(values, [(i + 1) / len(values) for i in range(len(values))], label="1 s tick")
        clustered = results.get("cluster", {}).get("lag")
        if clustered and clustered["lags_for_plot"]:
            other = sorted(clustered["lags_for_plot"])
            left.plot(other, [(i + 1) / len(other) for i in range(len(other))],
                      label="1 s tick, Redis Cluster")  # fmt: skip
        for extra in results.get("lag_by_interval", []):
            other = sorted(extra["lags_for_plot"])
            left.plot(other, [(i + 1) / len(other) for i in range(len(other))],
                      label=f"{extra['due_interval_seconds']:g} s tick")  # fmt: skip
        left.axvline(TARGET_LAG_P99, color="grey", linestyle="--", label="target p99 (2 s)")
        left.axhline(0.99, color="grey", linestyle=":")
        left.set_xlabel("lag from due time to token.refreshed (s)")
        left.set_ylabel("fraction of connections")
        left.set_title(f"{lag['rate_per_s']:g}/s for {lag['seconds']:g} s, "
                       f"{lag['worker_processes']} processes")  # fmt: skip
        left.legend(fontsize="small")
        p99 = lag["p99_by_10s_of_due_times"]
        right.plot([10 * i + 5 for i in range(len(p99))], p99, marker="o")
        right.axhline(TARGET_LAG_P99, color="grey", linestyle="--")
        right.set_xlabel("due time, seconds into the run (10 s buckets)")
        right.set_ylabel("p99 lag (s)")
        right.set_ylim(bottom=0)
        right.set_title("p99 lag over the run")
        figure.suptitle(f"Refresh lag under sustained load (bench/scale.py, {stamp})")
        figure.tight_layout()
        written.append(directory / "scale-lag.png")
        figure.savefig(written[-1], dpi=100)
        pyplot.close(figure)
    out = results.get("scale_out")
    if out:
        runs = out["runs"]
        figure, axes = pyplot.subplots(figsize=(7, 4.5))
        procs = [r["worker_processes"] for r in runs]
        axes.plot(procs, [r["refreshed_per_s"] for r in runs], marker="o",
                  label="refreshes/s, one Redis")  # fmt: skip
        clustered = results.get("cluster", {}).get("scale_out")
        if clustered:
            axes.plot([r["worker_processes"] for r in clustered["runs"]],
                      [r["refreshed_per_s"] for r in clustered["runs"]], marker="s",
                      label="refreshes/s, Redis Cluster (3 masters)")  # fmt: skip
        limit = out["where_redis_limits"]["refreshes_per_s_at_one_redis_core"]
        if limit:
            axes.axhline(limit, color="grey", linestyle="--",
                         label=f"Redis at one core busy ({limit:,}/s)")  # fmt: skip
        axes.axhline(LAG_RATE, color="grey", linestyle=":", label="1M connections, 1 h tokens")
        axes.set_xticks(procs)
        axes.set_xlabel("worker processes (2 cores)")
        axes.set_ylabel("refreshes per second")
        axes.set_ylim(bottom=0)
        axes.set_title(f"Burst throughput by worker processes (bench/scale.py, {stamp})")
        axes.legend(fontsize="small")
        figure.tight_layout()
        written.append(directory / "scale-workers.png")
        figure.savefig(written[-1], dpi=100)
        pyplot.close(figure)
    return written
