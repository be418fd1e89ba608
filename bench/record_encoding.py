"""A connection's record as a Redis hash (what tokenlife stores), as one JSON string and as
one msgpack string: Redis memory per record, and the Python time to build and read one.

    PYTHONPATH=. .venv/bin/python bench/record_encoding.py [--records 20000]

The record is what `connection_fields` writes for a Google-sized token set (bench/scale.py's
`google_payload`): token values Fernet-encrypted, metadata readable. Memory is MEMORY USAGE
averaged over `--records` keys of each kind, in a redis-server of its own, once with Redis's
default compact-hash bound (hash-max-listpack-value 64: the ciphertexts exceed it, so the
hash is a hashtable) and once with 1024 (what docs/deployment.md recommends: a listpack).
Times are medians of 5 runs over the records, in this process; they print as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet
from redis.asyncio import Redis

from bench.refresh_throughput import free_port, wait_port
from bench.scale import google_payload, redis_server
from tokenlife.adapters.connection_record import connection_fields
from tokenlife.adapters.crypto import Cipher
from tokenlife.core.policy import Status, Verdict
from tokenlife.core.tokens import token_set_from_payload

NOW = 1_800_000_000.0


def load_msgpack() -> Any:
    """msgpack, or exit with one line. Imported by name so that `mypy` and the tests don't
    need it: it is in the `bench` extra only."""
    try:
        return importlib.import_module("msgpack")
    except ImportError:
        raise SystemExit(
            "bench.record_encoding: msgpack is not installed: .venv/bin/pip install -e '.[bench]'"
        ) from None


def record(cipher: Cipher, i: int) -> dict[str, str]:
    fields = connection_fields(
        "google-crm", f"user-{i:07d}", "google", token_set_from_payload(google_payload(i), NOW),
        cipher, verdict=Verdict.REFRESHABLE, status=Status.ACTIVE,
        scopes_requested=("openid", "email", "https://www.googleapis.com/auth/drive.readonly"),
        next_check_at=NOW + 3000, now=NOW,
    )  # fmt: skip
    # What a save adds beside the fields (save_connection.lua).
    return {**fields, "created_at": repr(NOW), "updated_at": repr(NOW), "version": "1"}


async def memory(
    port: int, records: list[dict[str, str]], listpack_value: int, msgpack: Any
) -> dict[str, Any]:
    redis = Redis(port=port, decode_responses=False)
    await redis.flushall()
    await redis.config_set("hash-max-listpack-value", listpack_value)
    async with redis.pipeline(transaction=False) as pipe:
        for i, fields in enumerate(records):
            pipe.hset(f"hash:{i}", mapping=fields)  # type: ignore[arg-type]
            pipe.set(f"json:{i}", json.dumps(fields, separators=(",", ":")))
            pipe.set(f"msgpack:{i}", msgpack.packb(fields))
        await pipe.execute()
    found: dict[str, Any] = {}
    for kind in ("hash", "json", "msgpack"):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(len(records)):
                pipe.memory_usage(f"{kind}:{i}", samples=0)
            sizes = await pipe.execute()
        found[f"{kind}_bytes"] = round(float(statistics.mean(int(s) for s in sizes)), 1)
    found["hash_encoding"] = (await redis.object("encoding", "hash:0")).decode()
    await redis.aclose()
    return found


def timings(records: list[dict[str, str]], msgpack: Any) -> dict[str, float]:
    """Microseconds per record to encode and to decode, medians of 5 runs."""
    encoded_json = [json.dumps(r, separators=(",", ":")) for r in records]
    encoded_msgpack = [msgpack.packb(r) for r in records]
    cases: dict[str, Callable[[], object]] = {
        "json_encode_us": lambda: [json.dumps(r, separators=(",", ":")) for r in records],
        "json_decode_us": lambda: [json.loads(e) for e in encoded_json],
        "msgpack_encode_us": lambda: [msgpack.packb(r) for r in records],
        "msgpack_decode_us": lambda: [msgpack.unpackb(e) for e in encoded_msgpack],
    }
    found = {}
    for name, case in cases.items():
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            case()
            runs.append(time.perf_counter() - started)
        found[name] = round(statistics.median(runs) / len(records) * 1e6, 2)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    msgpack = load_msgpack()
    cipher = Cipher((Fernet.generate_key().decode(),))
    records = [record(cipher, i) for i in range(args.records)]
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port(port)
            found = {
                "records": args.records,
                "fields": len(records[0]),
                "field_name_and_value_bytes": sum(len(k) + len(v) for k, v in records[0].items()),
                "default_bound_64": asyncio.run(memory(port, records, 64, msgpack)),
                "bound_1024": asyncio.run(memory(port, records, 1024, msgpack)),
                "python": timings(records, msgpack),
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
    json.dump(found, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
