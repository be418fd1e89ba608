"""A refresh whose outcome is unknown: the client timed out, the provider processed the
request anyway and rotated the refresh token, and the answer never arrived.

The worker runs with a retry backoff of minutes (TOKENLIFE_REFRESH_RETRY_BASE_SECONDS
= 300: the first retry after a failure would wait 150-300 s) and its own beat, so nothing
here makes a retry due: only the prompt retry of an unknown outcome brings it within the
test's bounded wait. At a provider with a reuse grace window that retry presents the
stored (old) token inside the window and nothing is lost. At a strict provider the family
is lost, and the connection says so (re-authorization required, with its alert); that is
the window no client can close (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.fakes.base import Reply
from tests.faults.harness import (
    FaultFakes,
    WorkerGroup,
    make_settings,
    open_runtime,
    record_figure,
    seed,
)
from tests.support import client_app, stream_events, wait_until

from tokenlife.core import events
from tokenlife.core.policy import Status
from tokenlife.core.refresh_timing import PROMPT_RETRY_SECONDS
from tokenlife.runtime import Runtime

CONNECTIONS = 5
LATE = 2.5  # seconds: past the client's 1 s timeout, then the provider answers 200
RETRY_BASE_SECONDS = 300.0  # a plain first retry would wait 150-300 s
# Beat claims once a second and a refresh takes a moment: what the retry may take past
# its due time before it has settled.
SETTLE_SLACK_SECONDS = 10.0


@dataclass
class Case:
    integration: str
    families: dict[str, str]  # connection id -> family
    retry_within_seconds: float = 0.0  # scheduled: due time - failure time, worst case
    settled_within_seconds: float = 0.0  # observed: failure to retry settled, worst case
    lost: tuple[str, ...] = ()


async def run_case(runtime: Runtime, fakes: FaultFakes, integration: str) -> Case:
    fake = fakes.provider(integration)
    now = time.time()
    # Due now: the worker's own beat claims them.
    families = await seed(runtime, fakes, integration, CONNECTIONS, lifetime=3600, now=now,
                          prefix=f"unknown-{integration}")  # fmt: skip
    case = Case(integration, families)
    for family in families.values():
        # The first refresh answers after the client gave up; the retry, at once.
        fake.script_refresh(family, Reply(delay=LATE), Reply())

    failed_at: dict[str, float] = {}

    async def timed_out() -> bool:
        # Each failure is recorded as it is seen: a retry that settles before the next
        # look clears last_failed_at.
        for cid in families:
            connection = await runtime.tokens.get(integration, cid)
            failed, due = connection.last_failed_at, connection.next_refresh_at
            if failed is not None and due is not None and cid not in failed_at:
                failed_at[cid] = failed
                case.retry_within_seconds = max(case.retry_within_seconds, round(due - failed, 1))
        return len(failed_at) == len(families)

    what = f"{integration}: the provider to rotate after the client gave up"
    await wait_until(timed_out, timeout=30, what=what)

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

    # Bounded far below the 150 s a plain backoff would take: only the prompt retry fits.
    await wait_until(
        settled, timeout=PROMPT_RETRY_SECONDS + SETTLE_SLACK_SECONDS + LATE,
        what=f"{integration}: the retry to come due by itself and settle",
    )  # fmt: skip
    done = time.time()
    case.settled_within_seconds = round(max(done - t for t in failed_at.values()), 1)
    case.lost = tuple(cid for cid, f in families.items() if fake.families[f].revoked)
    return case


# It starts a worker of its own (about 12 s): with the long ones, in `make test-faults`.
@pytest.mark.faults
async def test_a_refresh_processed_after_the_client_timed_out_is_retried_promptly(
    fault_fakes: FaultFakes,
    redis_db: int,
    scratch: Path,
    workers: list[WorkerGroup],
    runtimes: list[Runtime],
) -> None:
    settings = make_settings(
        f"redis://127.0.0.1:6379/{redis_db}", fault_fakes,
        refresh_retry_base_seconds=RETRY_BASE_SECONDS,
    )  # fmt: skip
    group = WorkerGroup(
        settings, scratch, "unknown", beat=True,
        env={"TOKENLIFE_REFRESH_RETRY_BASE_SECONDS": str(RETRY_BASE_SECONDS)},
    )  # fmt: skip
    workers.append(group)
    app = client_app(settings)
    try:
        runtime = await open_runtime(settings)
        runtimes.append(runtime)
        group.start()
        group.wait_ready(app)
        grace, strict = await asyncio.gather(
            run_case(runtime, fault_fakes, "grace"), run_case(runtime, fault_fakes, "strict")
        )
    finally:
        app.close()
    record_figure(
        "outcome_unknown", connections_each=CONNECTIONS, retry_base_seconds=RETRY_BASE_SECONDS,
        grace={"lost": len(grace.lost), "retry_within_seconds": grace.retry_within_seconds,
               "settled_within_seconds": grace.settled_within_seconds},
        strict={"lost": len(strict.lost), "retry_within_seconds": strict.retry_within_seconds,
                "settled_within_seconds": strict.settled_within_seconds},
    )  # fmt: skip
    for case in (grace, strict):
        # Every failure was seen, and its retry was scheduled inside the prompt bound (the
        # bound is a cap: no jitter is added past it).
        assert 0 < case.retry_within_seconds <= PROMPT_RETRY_SECONDS, case
    assert grace.lost == ()
    assert grace.retry_within_seconds < fault_fakes.grace.reuse_grace_seconds
    # The strict provider took the prompt retry for reuse and revoked every family; each
    # such connection says so.
    assert strict.lost, "the strict provider revoked nothing: the retry never came"
    flagged = {
        data["connection_id"]
        for kind, data in await stream_events(runtime.redis, settings.key_prefix)
        if kind == events.REAUTHORIZATION_REQUIRED
    }
    assert set(strict.lost) <= flagged
