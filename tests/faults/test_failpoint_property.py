"""Property: whatever failpoints kill whichever workers in whatever order, over many threads, nothing
a human should see is lost or shown twice, no thread is left `running`, and no tool runs twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import events as ev
from core.domain.ids import new_id
from tests.faults.cluster import eventually
from tests.faults.harness import APPROVERS, Cluster, StartCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WORKER_FAILPOINTS = ["after-commit", "after-decision", "after-tool", "before-ack"]
FLOWS = {"read": "/read {name}", "write": "/slow_write {name} 0", "ship": "/ship {name}"}
SETTLED = ("done", "awaiting_human")


async def approve_as_they_come(cluster: Cluster, stop: asyncio.Event) -> None:
    """An approver who answers every request once, as soon as it is pending."""
    answered: set[str] = set()
    while not stop.is_set():
        for record in await cluster.store.pending_approvals():
            if record.approval_id not in answered:
                answered.add(record.approval_id)
                await cluster.bus.publish(cluster.decision(record.approval_id, APPROVERS[0]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kills=st.lists(st.sampled_from(WORKER_FAILPOINTS), min_size=1, max_size=4),
    flows=st.lists(st.sampled_from(sorted(FLOWS)), min_size=2, max_size=6),
)
async def test_kills_at_random_failpoints_lose_and_double_nothing(
    start_cluster: StartCluster, kills: list[str], flows: list[str]
) -> None:
    cluster = await start_cluster(0)
    run = new_id()[-6:]
    threads = {
        await cluster.say(FLOWS[kind].format(name=f"{kind}{n}"), f"{run}-{n}"): kind for n, kind in enumerate(flows)
    }
    stop = asyncio.Event()
    approver = asyncio.create_task(approve_as_they_come(cluster, stop))
    try:
        for failpoint in kills:  # armed workers, one after another: each dies at its point or idles
            await cluster.workers.start(1, BOT_FAILPOINTS=f"{failpoint}=kill")
        await cluster.workers.start(1)  # the survivor
        for thread_id in threads:
            await cluster.settled(thread_id, *SETTLED, within=60)
        await eventually(cluster.inbox_settled, "every inbox entry acknowledged", within=30)
    finally:
        stop.set()
        await approver
        await cluster.workers.close()

    outbox = [o for o in await cluster.outbox() if o.thread_id in threads]
    for thread_id, kind in threads.items():
        events = await cluster.audit(thread_id)
        state = await cluster.state(thread_id)
        mine = [o for o in outbox if o.conversation == state.conversation]
        seen = Counter(o.kind for o in mine if not (isinstance(o, ev.Reply) and not o.final))
        where = f"{kind} thread {thread_id}: {[e.type for e in events]}, shown {dict(seen)}"
        assert seen["reply"] + seen["question"] == 1, f"{where}: one answer, exactly"
        assert seen["reply"] == (state.status == "done"), where
        if kind == "ship":
            assert seen["approval_request"] == 1 and seen["decision_receipt"] == 1, where
        assert len({o.id for o in mine}) == len(mine), f"{where}: an outbound id shown twice"
