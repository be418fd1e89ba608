"""Provider faults in one run against the running worker: timeouts, a 429 storm with
Retry-After, 5xx, truncated and invalid JSON, HTML pages, 200 with an `error` field, a huge
body, and other answers that are no token response.

No crash (the worker lives, no refresh counted as `crashed`), nothing stored but the last
valid tokens (read back and decrypted), the grant never given up for an answer that says
nothing about it, and every connection refreshes normally once the provider recovers.
"""

from __future__ import annotations

import time

from tests.fakes.base import Reply
from tests.faults.conftest import PlainWorker
from tests.faults.harness import FaultFakes, open_runtime, record_figure, seed
from tests.support import make_due, stream_events, wait_until

from tokenlife.core import events
from tokenlife.core.policy import Status
from tokenlife.runtime import Runtime

HUGE = b'{"access_token": "' + b"a" * (3 * 1024 * 1024) + b'", "expires_in": 3600}'
RETRY_AFTER = 30
FAULTS: dict[str, Reply] = {
    # Answered after the client's 1 s timeout, and never processed: no rotation happened.
    "timeout": Reply(status=503, delay=3.0),
    "429": Reply(status=429, headers={"Retry-After": str(RETRY_AFTER)}, body=b"slow down",
                 content_type="text/plain"),
    "500": Reply(status=500, body=b'{"error": "server_error"}'),
    "502 html": Reply(status=502, body=b"<html><body>Bad Gateway</body></html>",
                      content_type="text/html"),
    "503 empty": Reply(status=503, body=b"", content_type="text/plain"),
    "truncated json": Reply(body=b'{"access_token": "at-truncated", "token_ty'),
    "invalid json": Reply(body=b"{access_token: at-invalid}"),
    "html 200": Reply(body=b"<!doctype html><html>Sign in</html>", content_type="text/html"),
    "error in 200": Reply(body=b'{"error": "server_error", "error_description": "later"}'),
    "huge body": Reply(body=HUGE),
    "empty 200": Reply(body=b""),
    "json array": Reply(body=b'["access_token"]'),
    "null access_token": Reply(body=b'{"access_token": null, "token_type": "Bearer"}'),
}  # fmt: skip
STORM = 20  # connections answered 429 at once


async def versions(runtime: Runtime, ids: list[str]) -> dict[str, int]:
    return {cid: (await runtime.tokens.get("strict", cid)).version for cid in ids}


async def send_due_batch(runtime: Runtime, worker: PlainWorker, ids: list[str]) -> None:
    """What beat does for due connections: one refresh_batch with their due times."""
    items = []
    for cid in ids:
        due = await make_due(runtime.redis, worker.settings, "strict", cid)
        items.append(["strict", cid, due])
    worker.app.send_task("tokenlife.refresh_batch", args=[items])


async def test_provider_faults_in_one_run_store_nothing_and_keep_the_last_valid_token(
    fault_fakes: FaultFakes, plain_worker: PlainWorker, runtimes: list[Runtime]
) -> None:
    runtime = await open_runtime(plain_worker.settings)
    runtimes.append(runtime)
    strict = fault_fakes.strict
    kinds = [*FAULTS, *(["429"] * STORM)]
    now = time.time()
    seeded = await seed(runtime, fault_fakes, "strict", len(kinds), lifetime=3600, now=now,
                        prefix="pf", due_at=now + 3600)  # fmt: skip
    ids = sorted(seeded, key=lambda cid: int(cid.split("-")[1]))
    kind_of = dict(zip(ids, kinds, strict=True))
    valid = {cid: await runtime.tokens.tokens("strict", cid) for cid in ids}
    for cid in ids:
        strict.script_refresh(seeded[cid], FAULTS[kind_of[cid]])
    before = await versions(runtime, ids)
    counters = runtime.keys.counters
    sent_at = time.time()
    await send_due_batch(runtime, plain_worker, ids)

    async def all_answered() -> bool:
        now = await versions(runtime, ids)
        # make_due wrote no version; the refresh's own bookkeeping does.
        return all(now[cid] > before[cid] for cid in ids)

    await wait_until(all_answered, timeout=30, what="every faulty answer to be handled")
    outcomes: dict[str, str] = {}
    problems: list[str] = []
    for cid in ids:
        kind = kind_of[cid]
        connection = await runtime.tokens.get("strict", cid)
        stored = await runtime.tokens.tokens("strict", cid)
        outcomes[kind] = (f"{connection.status.value}, last_error={connection.last_error}, "
                          f"retry in {connection.next_refresh_at - sent_at:.0f} s"
                          if connection.next_refresh_at else connection.status.value)  # fmt: skip
        if (stored.access_token, stored.refresh_token) != (
            valid[cid].access_token,
            valid[cid].refresh_token,
        ):
            problems.append(f"{kind}: stored tokens changed")
        if connection.status is not Status.ACTIVE:
            problems.append(f"{kind}: status {connection.status.value}")
        if kind == "429" and (connection.next_refresh_at or 0) < sent_at + RETRY_AFTER - 1:
            problems.append(f"429: retried before Retry-After: {outcomes[kind]}")
    crashed = await runtime.redis.hget(counters, "refresh:custom:crashed")
    record_figure("provider_faults", outcomes=outcomes, problems=problems, crashed=crashed)
    assert plain_worker.group.alive(), "the worker died"
    assert crashed is None, f"{crashed!r} refreshes crashed"
    assert problems == []
    assert all(strict.families[seeded[cid]].refreshes == 0 for cid in ids)

    # The provider recovers: every connection refreshes, with the token it kept.
    for cid in ids:
        strict.script_refresh(seeded[cid], Reply())
    await send_due_batch(runtime, plain_worker, ids)

    async def all_refreshed() -> bool:
        for cid in ids:
            family = strict.families[seeded[cid]]
            stored = await runtime.tokens.tokens("strict", cid)
            if family.refreshes != 1 or stored.refresh_token != family.live:
                return False
        return True

    await wait_until(all_refreshed, timeout=30, what="every connection to refresh again")
    assert not any(strict.families[seeded[cid]].revoked for cid in ids)
    entries = await stream_events(runtime.redis, plain_worker.settings.key_prefix)
    recovered = [d["connection_id"] for t, d in entries if t == events.CONNECTION_RECOVERED]
    assert sorted(cid for cid in recovered if cid in seeded) == sorted(ids)
