"""Workers dying or told to stop mid-step: nothing is lost, and no tool that is not idempotent runs twice."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from core.domain import events as ev
from core.redis import keys
from tests.faults.cluster import eventually
from tests.faults.harness import INTERRUPTED_FLOW, READ_FLOW, StartCluster, of_type

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ANSWERED_FLOW = ["human_answer", "tool_call", "tool_started", "tool_result", "tool_call", "agent_reply"]


async def test_a_worker_killed_mid_tool_loses_nothing_and_the_tool_never_runs_again(
    start_cluster: StartCluster,
) -> None:
    """SIGKILL the worker inside `slow_write`: another takes the trigger over, records the tool as
    interrupted and asks a human; the other threads complete; nothing runs twice."""
    cluster = await start_cluster(3)
    victim = await cluster.say("/slow_write victim 30", "victim")
    others = [await cluster.say(f"/slow_write w{i} 0.2", f"w{i}") for i in range(3)]
    others += [await cluster.say(f"/read r{i}", f"r{i}") for i in range(3)]
    effect = await cluster.effect_of("slow_write:victim")
    running = (await cluster.state(victim)).running
    assert running is not None and running.call_id == effect.call_id, "the kill must land inside the tool"

    await cluster.workers.by_pid(effect.worker_pid).crash()
    others += [await cluster.say(f"/read after{i}", f"after{i}") for i in range(3)]

    await cluster.settled(victim, "awaiting_human")
    events = await cluster.audit(victim, INTERRUPTED_FLOW)
    [error] = of_type(events, ev.ToolErrorEvent)
    assert (error.kind, error.call_id, error.tool) == ("interrupted", effect.call_id, "slow_write")
    questions = [o for o in await cluster.outbox() if isinstance(o, ev.Question) and o.thread_id == victim]
    assert len(questions) == 1 and "slow_write was interrupted" in questions[0].question
    for thread_id in others:
        await cluster.settled(thread_id, "done")
        await cluster.audit(thread_id, READ_FLOW)

    # The human answers the escalation: the thread goes on, and slow_write is still not run again.
    await cluster.say("/read the-damage", "victim")
    await cluster.settled(victim, "done")
    await cluster.audit(victim, INTERRUPTED_FLOW + ANSWERED_FLOW)
    assert [e for e in await cluster.effects() if e.thread_id == victim] == [effect]
    await eventually(cluster.inbox_settled, "every inbox entry acknowledged")
    assert await cluster.dead_letters() == []


async def test_sigterm_during_a_tool_finishes_the_step_then_exits_and_takes_no_new_work(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster(1)
    thread_id = await cluster.say("/slow_write term 1.5", "term")
    effect = await cluster.effect_of("slow_write:term")
    [worker] = cluster.workers.all
    worker.signal(signal.SIGTERM)  # the worker only, as `kill PID` or a container runtime does
    await eventually(lambda: worker.logged("stopping"), "the worker to notice")
    later = await cluster.say("/read later", "later")

    assert await worker.exited() == 0
    events = await cluster.audit(thread_id, READ_FLOW)
    [result] = of_type(events, ev.ToolResult)
    assert (result.call_id, result.output) == (effect.call_id, "wrote slow_write:term")
    assert (await cluster.state(later)).seq == 0, "a stopping worker takes no new trigger"

    await cluster.workers.start(1)  # the next worker finds it waiting
    await cluster.settled(later, "done")
    await cluster.audit(later, READ_FLOW)
    await eventually(cluster.inbox_settled, "every inbox entry acknowledged")


async def test_sigterm_to_the_process_group_still_lets_the_tool_finish(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(1)
    thread_id = await cluster.say("/slow_write group 1.5", "group")
    effect = await cluster.effect_of("slow_write:group")
    [worker] = cluster.workers.all
    worker.signal(signal.SIGTERM, group=True)

    assert await worker.exited() == 0
    events = await cluster.audit(thread_id)
    assert [(e.call_id, e.output) for e in of_type(events, ev.ToolResult)] == [
        (effect.call_id, "wrote slow_write:group")
    ], [e.error for e in of_type(events, ev.ToolErrorEvent)]


async def test_a_live_step_keeps_its_inbox_entry(start_cluster: StartCluster) -> None:
    """A step that runs longer than the claim idle time is still being worked on: nobody may claim it."""
    cluster = await start_cluster(2)
    thread_id = await cluster.say("/slow_write long 4", "long")
    effect = await cluster.effect_of("slow_write:long")
    owners: set[tuple[bytes, int]] = set()

    async def finished() -> bool:
        pending: Any = await cluster.client.xpending_range(keys.INBOX, keys.WORKERS_GROUP, "-", "+", 10)
        owners.update((p["consumer"], p["times_delivered"]) for p in pending)
        return (await cluster.state(thread_id)).status == "done"

    await eventually(finished, "the long step finishing")
    await cluster.audit(thread_id, READ_FLOW)
    assert len(owners) == 1 and next(iter(owners))[1] == 1, f"claimed while worker {effect.worker_pid} ran it: {owners}"
