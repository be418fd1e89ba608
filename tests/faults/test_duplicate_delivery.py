"""Duplicate delivery of refresh tasks: the same `tokenlife.refresh_batch` message twice at
once (a redelivered acks_late message while the first copy still runs), then a third time
after both finished (a redelivery after a lost acknowledgement).

One provider call per connection and due time, no refresh token presented twice (the
strict fake would revoke the family), and the stored token is the provider's live one.
"""

from __future__ import annotations

import re
import time

from tests.faults.conftest import PlainWorker
from tests.faults.harness import FaultFakes, open_runtime, record_figure, seed
from tests.support import wait_until

from tokenlife.runtime import Runtime

CONNECTIONS = 20
OUTCOME = re.compile(r"^refresh:custom:[a-z_]+$")


async def outcomes(runtime: Runtime) -> dict[str, int]:
    counters = await runtime.redis.hgetall(runtime.keys.counters)
    return {str(k): int(v) for k, v in counters.items() if OUTCOME.match(str(k))}


async def handled(runtime: Runtime, before: dict[str, int], count: int) -> dict[str, int]:
    """Wait until `count` more refresh outcomes were counted; return them by outcome."""

    async def counted() -> bool:
        return sum((await outcomes(runtime)).values()) - sum(before.values()) >= count

    await wait_until(counted, timeout=30, what=f"{count} refresh outcomes")
    after = await outcomes(runtime)
    delta = {k.rsplit(":", 1)[1]: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in delta.items() if v}


async def test_the_same_refresh_batch_delivered_twice_calls_the_provider_once(
    fault_fakes: FaultFakes, plain_worker: PlainWorker, runtimes: list[Runtime],
    slow_refreshes: None,
) -> None:  # fmt: skip
    runtime = await open_runtime(plain_worker.settings)
    runtimes.append(runtime)
    strict = fault_fakes.strict
    seeded = await seed(runtime, fault_fakes, "strict", CONNECTIONS, lifetime=3600,
                        now=time.time(), prefix="dup")  # fmt: skip
    items = []
    for cid in seeded:
        connection = await runtime.tokens.get("strict", cid)
        items.append(["strict", cid, connection.next_refresh_at])
    before = await outcomes(runtime)
    for _ in range(2):
        plain_worker.app.send_task("tokenlife.refresh_batch", args=[items])
    delta = await handled(runtime, before, 2 * CONNECTIONS)
    plain_worker.app.send_task("tokenlife.refresh_batch", args=[items])
    late = await handled(runtime, await outcomes(runtime), CONNECTIONS)
    calls = {cid: strict.families[family].refreshes for cid, family in seeded.items()}
    record_figure("duplicate_refresh_batch", connections=CONNECTIONS,
                  outcomes_of_two_at_once=delta, outcomes_of_a_late_third=late,
                  provider_calls=sum(calls.values()))  # fmt: skip
    assert all(n == 1 for n in calls.values()), calls
    assert sum(strict.families[f].reuse_detected for f in seeded.values()) == 0
    for cid, family in seeded.items():
        stored = await runtime.tokens.tokens("strict", cid)
        assert stored.refresh_token == strict.families[family].live
    assert delta.get("refreshed") == CONNECTIONS
    assert delta.get("crashed", 0) == 0
    assert late == {"not_due": CONNECTIONS}
