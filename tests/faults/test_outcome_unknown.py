"""A refresh whose outcome is unknown: the client timed out, the provider processed the
request anyway and rotated the refresh token, and the answer never arrived.

At a provider with a reuse grace window, the retry is scheduled inside the window and the
stored (old) token is accepted: nothing is lost. At a strict provider the family is lost,
and the connection says so (re-authorization required, with its alert); that is the window
no client can close (docs/reliability.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.fakes.base import Reply
from tests.faults.conftest import PlainWorker
from tests.faults.harness import FaultFakes, open_runtime, record_figure, seed
from tests.support import make_due, stream_events, wait_until

from tokenlife.core import events
from tokenlife.core.policy import Status
from tokenlife.runtime import Runtime

CONNECTIONS = 5
LATE = 2.5  # seconds: past the client's 1 s timeout, then the provider answers 200


@dataclass
class Case:
    integration: str
    families: dict[str, str]  # connection id -> family
    retry_within_seconds: float = 0.0
    lost: tuple[str, ...] = ()


async def refresh_once(runtime: Runtime, worker: PlainWorker, case: Case) -> None:
    items = [
        [case.integration, cid,
         await make_due(runtime.redis, worker.settings, case.integration, cid)]
        for cid in case.families
    ]  # fmt: skip
    worker.app.send_task("tokenlife.refresh_batch", args=[items])


async def run_case(
    runtime: Runtime, worker: PlainWorker, fakes: FaultFakes, integration: str
) -> Case:
    fake = fakes.provider(integration)
    now = time.time()
    families = await seed(runtime, fakes, integration, CONNECTIONS, lifetime=3600, now=now,
                          prefix=f"unknown-{integration}", due_at=now + 3600)  # fmt: skip
    case = Case(integration, families)
    for family in families.values():
        fake.script_refresh(family, Reply(delay=LATE))
    before = {cid: (await runtime.tokens.get(integration, cid)).version for cid in families}
    await refresh_once(runtime, worker, case)

    async def rotated_and_timed_out() -> bool:
        for cid, family in families.items():
            connection = await runtime.tokens.get(integration, cid)
            if fake.families[family].refreshes < 1 or connection.version == before[cid]:
                return False
        return True

    what = f"{integration}: the provider to rotate after the client gave up"
    await wait_until(rotated_and_timed_out, timeout=30, what=what)
    failed_at = time.time()
    retries = [(await runtime.tokens.get(integration, cid)).next_refresh_at for cid in families]
    case.retry_within_seconds = round(max(r or float("inf") for r in retries) - failed_at, 1)
    for family in families.values():
        fake.script_refresh(family, Reply())
    await refresh_once(runtime, worker, case)  # the retry comes due (time made to pass)

    async def settled() -> bool:
        for cid, family_id in families.items():
            family = fake.families[family_id]
            stored = await runtime.tokens.tokens(integration, cid)
            status = (await runtime.tokens.get(integration, cid)).status
            saved = family.refreshes >= 2 and stored.refresh_token == family.live
            flagged = family.revoked and status is Status.REAUTHORIZATION_REQUIRED
            if not (saved or flagged):
                return False
        return True

    await wait_until(settled, timeout=30, what=f"{integration}: the retry to settle")
    case.lost = tuple(cid for cid, f in families.items() if fake.families[f].revoked)
    return case


async def test_a_refresh_processed_after_the_client_timed_out_loses_nothing_in_a_grace_window(
    fault_fakes: FaultFakes, plain_worker: PlainWorker, runtimes: list[Runtime]
) -> None:
    runtime = await open_runtime(plain_worker.settings)
    runtimes.append(runtime)
    grace = await run_case(runtime, plain_worker, fault_fakes, "grace")
    strict = await run_case(runtime, plain_worker, fault_fakes, "strict")
    record_figure(
        "outcome_unknown", connections_each=CONNECTIONS,
        grace={"lost": len(grace.lost), "retry_within_seconds": grace.retry_within_seconds},
        strict={"lost": len(strict.lost), "retry_within_seconds": strict.retry_within_seconds},
    )  # fmt: skip
    assert grace.lost == ()
    assert grace.retry_within_seconds < fault_fakes.grace.reuse_grace_seconds
    flagged = {
        data["connection_id"]
        for kind, data in await stream_events(runtime.redis, plain_worker.settings.key_prefix)
        if kind == events.REAUTHORIZATION_REQUIRED
    }
    # The strict provider revoked what it saw reused; each such connection says so.
    assert set(strict.lost) <= flagged
