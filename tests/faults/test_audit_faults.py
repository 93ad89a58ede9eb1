"""A worker killed between a commit with approval facts and its audit append (`before-audit`).

The records come from the thread's log, so the commit is enough: the survivor's sweeper (or the next
commit with facts on the thread) appends what the dead worker did not, each record once, the chain intact.
"""

from __future__ import annotations

import pytest

from core.domain.audit import AuditRecord
from core.redis import keys
from core.redis.audit import AuditLog
from tests.faults.cluster import eventually
from tests.faults.harness import APPROVERS, SHIPPED_FLOW, Cluster, StartCluster
from tests.faults.test_failpoints import INTERRUPTED_AFTER_APPROVAL, armed, killed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def trail(cluster: Cluster, thread_id: str) -> list[AuditRecord]:
    return await AuditLog(cluster.store).thread_records(thread_id)


async def facts_are(cluster: Cluster, thread_id: str, expected: list[str]) -> list[AuditRecord]:
    async def check() -> list[AuditRecord] | None:
        records = await trail(cluster, thread_id)
        return records if [r.fact for r in records] == expected else None

    return await eventually(check, f"the audit trail of {thread_id} being {expected}")


async def intact(cluster: Cluster) -> None:
    result = await AuditLog(cluster.store).verify()
    assert result.intact, str(result.fault)
    assert await cluster.client.zrange(keys.AUDIT_DUE, 0, -1) == [], "no thread left due"


async def test_killed_before_auditing_the_request_the_sweeper_appends_it_once(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(0)
    worker = await armed(cluster, "before-audit")
    thread_id = await cluster.say("/ship v1", "audit-request")
    await killed(worker, "before-audit")
    assert await trail(cluster, thread_id) == [], "the request is committed, its record not appended"
    [survivor] = await cluster.workers.start(1)

    await facts_are(cluster, thread_id, ["requested"])  # nothing but the survivor's sweeper touches the thread
    assert await survivor.logged("had 1 unaudited facts"), await survivor.tail()
    approval_id = await cluster.approval_requested(thread_id)
    assert await cluster.bus.publish(cluster.decision(approval_id, APPROVERS[0]))
    await cluster.settled(thread_id, "done")
    await cluster.audit(thread_id, SHIPPED_FLOW)
    records = await facts_are(cluster, thread_id, ["requested", "approved", "started", "result"])
    assert [r.n for r in records] == [1, 2, 3, 4] and records[1].who == APPROVERS[0]
    await intact(cluster)


async def test_killed_before_auditing_the_decision_nothing_is_lost_or_doubled(start_cluster: StartCluster) -> None:
    """The decision and the tool's start are committed, unaudited, and the worker is gone: the survivor
    records the interrupted tool, and the dead worker's facts are appended before its own (by that
    commit's append, which finds the thread still due, or by the sweeper, whichever comes first)."""
    cluster = await start_cluster(1)
    thread_id = await cluster.say("/ship v2", "audit-decision")
    approval_id = await cluster.approval_requested(thread_id)
    await facts_are(cluster, thread_id, ["requested"])
    await cluster.workers.close()
    worker = await armed(cluster, "before-audit")
    assert await cluster.bus.publish(cluster.decision(approval_id, APPROVERS[1]))
    await killed(worker, "before-audit")
    await cluster.workers.start(1)

    await cluster.settled(thread_id, "awaiting_human")
    await cluster.audit(thread_id, INTERRUPTED_AFTER_APPROVAL)
    records = await facts_are(cluster, thread_id, ["requested", "approved", "started", "result"])
    assert records[-1].detail == {"outcome": "interrupted"}
    assert len({r.event_id for r in records}) == 4, "each fact once"
    await intact(cluster)
