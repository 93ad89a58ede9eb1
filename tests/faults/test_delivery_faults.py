"""Triggers delivered more than once and approvals raced or left alone: each is applied exactly once."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain import people
from core.domain.ids import thread_id_for
from core.redis import keys
from core.redis.bus import Bus
from core.redis.store import Store
from tests.faults.cluster import eventually
from tests.faults.harness import APPROVERS, CHANNEL, EXPIRED_FLOW, READ_FLOW, SHIPPED_FLOW, StartCluster, of_type

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_the_same_trigger_delivered_many_times_is_applied_once(start_cluster: StartCluster) -> None:
    """Twenty publishes of one dedup key from four channel processes, then the same trigger id added
    to the inbox again behind the dedup layer's back: one thread, one message, one tool run, one reply."""
    cluster = await start_cluster(3)
    trigger = cluster.message("/slow_write once 0.3", "dup", dedup_key="slack:message:T1/C1/1700000000.000100")
    clients = [aioredis.Redis.from_url(cluster.server.url) for _ in range(4)]
    try:
        buses = [Bus(client, Store(client)) for client in clients]
        accepted = await asyncio.gather(*(buses[n % 4].publish(trigger) for n in range(20)))
    finally:
        for client in clients:
            await client.aclose()
    assert accepted.count(True) == 1
    for _ in range(3):
        await cluster.client.xadd(keys.INBOX, {"t": trigger.model_dump_json()})

    thread_id = thread_id_for(CHANNEL, "dup")
    await cluster.settled(thread_id, "done")
    await eventually(cluster.inbox_settled, "all four inbox entries acknowledged")
    events = await cluster.audit(thread_id, READ_FLOW)
    assert [e.trigger_id for e in of_type(events, ev.UserMessage)] == [trigger.id]
    assert len([e for e in await cluster.effects() if e.thread_id == thread_id]) == 1
    replies = [o for o in await cluster.outbox() if isinstance(o, ev.Reply) and o.thread_id == thread_id]
    # One tool run: one progress note before it, then one final reply.
    assert [(r.final, r.text) for r in replies] == [(False, "running slow_write…"), (True, "wrote slow_write:once")]
    assert await cluster.dead_letters() == []


async def test_two_approvers_deciding_at_the_same_instant_decide_once(start_cluster: StartCluster) -> None:
    """Alice and Bob approve at once, for three approvals, across three workers: one decision each,
    the tool runs once, and the loser is told who decided first."""
    cluster = await start_cluster(3)
    threads = [await cluster.say(f"/ship v{i}", f"ship{i}") for i in range(3)]
    approvals = [await cluster.approval_requested(thread_id) for thread_id in threads]
    decisions = [cluster.decision(approval_id, who) for approval_id in approvals for who in APPROVERS]
    assert all(await asyncio.gather(*(cluster.bus.publish(d) for d in decisions)))

    for n, (thread_id, approval_id) in enumerate(zip(threads, approvals, strict=True)):
        await cluster.settled(thread_id, "done")
        events = await cluster.audit(thread_id, SHIPPED_FLOW)
        record = await cluster.approval(approval_id)
        [decided] = of_type(events, ev.ApprovalDecided)
        assert record.status == "approved" and decided.actor == record.decided_by in APPROVERS
        [loser] = [who for who in APPROVERS if who != record.decided_by]

        async def told(loser: str = loser, approval_id: str = approval_id) -> list[ev.Notice]:
            outbox = await cluster.outbox()
            return [o for o in outbox if isinstance(o, ev.Notice) and o.to == loser and approval_id in o.text]

        [notice] = await eventually(told, f"{loser} told that {approval_id} was decided")
        assert f"was already approved by {people.who(record.decided_by)}" in notice.text
        [shipped] = [e for e in await cluster.effects() if e.thread_id == thread_id]
        assert shipped.label == f"ship:v{n}"
    await eventually(cluster.inbox_settled, "every inbox entry acknowledged")
    personal = [o for o in await cluster.outbox() if isinstance(o, ev.Notice) and o.to]
    assert len(personal) == len(approvals), "only the losers get a notice"


async def test_an_approval_left_to_expire_comes_back_expired(start_cluster: StartCluster) -> None:
    """Nobody answers within `expires_in` (2 s): the sweepers of two workers expire it once, the
    thread gets an "expired" tool error, the tool never runs, and a late approval changes nothing."""
    cluster = await start_cluster(2, expires_in=2)
    thread_id = await cluster.say("/ship late", "late")
    approval_id = await cluster.approval_requested(thread_id)

    await cluster.settled(thread_id, "done")
    events = await cluster.audit(thread_id, EXPIRED_FLOW)
    [decided] = of_type(events, ev.ApprovalDecided)
    [error] = of_type(events, ev.ToolErrorEvent)
    assert (decided.decision, decided.actor, error.kind) == ("expire", "system", "expired")
    assert f"approval {approval_id} expired" in error.error
    assert (await cluster.approval(approval_id)).status == "expired"
    receipts = [o for o in await cluster.outbox() if isinstance(o, ev.DecisionReceipt)]
    assert [(r.approval_id, r.decision, r.by) for r in receipts] == [(approval_id, "expire", "system")]

    assert await cluster.bus.publish(cluster.decision(approval_id, "cli:alice"))

    async def refused() -> list[ev.Notice]:
        outbox = await cluster.outbox()
        return [o for o in outbox if isinstance(o, ev.Notice) and o.to == "cli:alice"]

    [notice] = await eventually(refused, "alice told the approval expired")
    assert f"approval {approval_id} expired at" in notice.text
    await eventually(cluster.inbox_settled, "every inbox entry acknowledged")
    await cluster.audit(thread_id, EXPIRED_FLOW)
    assert await cluster.effects() == [], "ship never ran"
