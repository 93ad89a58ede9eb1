"""A worker killed at each named failpoint (BOT_FAILPOINTS), a real Redis, a survivor taking over.

For each gap the promise is the same: what the thread recorded reaches the channel exactly once
(the card, the question, the final reply), the thread ends in the right state (never stuck in
`running`), and no tool runs twice.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from core.domain import events as ev
from core.redis import keys
from core.tools.redact import Redactor
from tests.faults.cluster import Worker, eventually
from tests.faults.harness import APPROVERS, READ_FLOW, SHIPPED_FLOW, Cluster, StartCluster, of_type

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

INTERRUPTED_AFTER_APPROVAL = [
    "thread_started",
    "user_message",
    "tool_call",
    "approval_requested",
    "approval_decided",
    "tool_started",
    "tool_error",
    "escalated",
]
WRITE_INTERRUPTED = ["thread_started", "user_message", "tool_call", "tool_started", "tool_error", "escalated"]


async def armed(cluster: Cluster, failpoint: str) -> Worker:
    [worker] = await cluster.workers.start(1, BOT_FAILPOINTS=f"{failpoint}=kill")
    return worker


async def killed(worker: Worker, failpoint: str) -> None:
    """The worker died by SIGKILL at `failpoint`, and said so first."""
    code = await worker.exited()
    assert code == -signal.SIGKILL, f"{worker.name} exited with {code}\n{await worker.tail()}"
    assert await worker.logged(f"failpoint {failpoint}"), await worker.tail()


async def shown(cluster: Cluster, thread_id: str) -> list[ev.Outbound]:
    """What the thread's own conversation was given, in order (progress notes aside: best effort by
    design; the decider's copy of a receipt goes to their own conversation)."""
    conversation = (await cluster.state(thread_id)).conversation
    return [o for o in await cluster.outbox() if o.conversation == conversation and not _progress(o)]


def _progress(outbound: ev.Outbound) -> bool:
    return isinstance(outbound, ev.Reply) and not outbound.final


def kinds(outbound: list[ev.Outbound]) -> list[str]:
    return [o.kind for o in outbound]


async def test_killed_after_storing_the_approval_request_the_card_arrives_once(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(0)
    worker = await armed(cluster, "after-commit")
    thread_id = await cluster.say("/ship v1", "card")
    await killed(worker, "after-commit")
    await cluster.workers.start(1)

    approval_id = await cluster.approval_requested(thread_id)
    assert await cluster.bus.publish(cluster.decision(approval_id, APPROVERS[0]))
    await cluster.settled(thread_id, "done")
    await cluster.audit(thread_id, SHIPPED_FLOW)
    assert kinds(await shown(cluster, thread_id)) == ["approval_request", "decision_receipt", "reply"]
    assert len(await cluster.effects()) == 1
    await eventually(cluster.inbox_settled, "every inbox entry acknowledged")


async def test_killed_after_storing_the_final_reply_it_arrives_once(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(0)
    worker = await armed(cluster, "after-commit")
    thread_id = await cluster.say("/read r1", "reply")
    await killed(worker, "after-commit")
    await cluster.workers.start(1)

    await eventually(cluster.inbox_settled, "the taken-over trigger acknowledged")
    state = await cluster.settled(thread_id, "done")
    await cluster.audit(thread_id, READ_FLOW)
    assert [o.text for o in await shown(cluster, thread_id) if isinstance(o, ev.Reply)] == [state.last_outcome]


async def test_killed_after_the_decision_the_tool_is_never_run_blindly(start_cluster: StartCluster) -> None:
    """Choice and tool_started are stored; the tool never started. The redelivered decision must
    not answer "already approved; nothing changed": the thread asks a human, the tool ran zero times."""
    cluster = await start_cluster(1)
    thread_id = await cluster.say("/ship v2", "decided")
    approval_id = await cluster.approval_requested(thread_id)
    await cluster.workers.close()
    worker = await armed(cluster, "after-decision")
    assert await cluster.bus.publish(cluster.decision(approval_id, APPROVERS[0]))
    await killed(worker, "after-decision")
    await cluster.workers.start(1)

    await cluster.settled(thread_id, "awaiting_human")
    events = await cluster.audit(thread_id, INTERRUPTED_AFTER_APPROVAL)
    assert of_type(events, ev.ToolErrorEvent)[0].kind == "interrupted"
    assert await cluster.effects() == []
    assert kinds(await shown(cluster, thread_id)) == ["approval_request", "decision_receipt", "question"]
    notices = [o for o in await cluster.outbox() if isinstance(o, ev.Notice)]
    assert notices == [], "the approver is not told 'already approved; nothing changed'"


async def test_killed_after_an_approved_tool_finished_it_is_not_run_again(start_cluster: StartCluster) -> None:
    """The reported case: the redelivered decision finds the approval decided; the interrupted-tool
    rule still applies (not idempotent: ask a human), and the thread is never left `running`."""
    cluster = await start_cluster(1)
    thread_id = await cluster.say("/ship v3", "shipped")
    approval_id = await cluster.approval_requested(thread_id)
    await cluster.workers.close()
    worker = await armed(cluster, "after-tool")
    assert await cluster.bus.publish(cluster.decision(approval_id, APPROVERS[1]))
    await killed(worker, "after-tool")
    await cluster.workers.start(1)

    await cluster.settled(thread_id, "awaiting_human")
    await cluster.audit(thread_id, INTERRUPTED_AFTER_APPROVAL)
    assert [e.label for e in await cluster.effects()] == ["ship:v3"], "ran once"
    assert kinds(await shown(cluster, thread_id)) == ["approval_request", "decision_receipt", "question"]


async def test_killed_after_an_idempotent_tool_it_runs_again_and_replies_once(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(0)
    worker = await armed(cluster, "after-tool")
    thread_id = await cluster.say("/read r2", "again")
    await killed(worker, "after-tool")
    await cluster.workers.start(1)

    await cluster.settled(thread_id, "done")
    events = await cluster.audit(thread_id)
    assert len(of_type(events, ev.ToolStarted)) == 2 and len(of_type(events, ev.ToolResult)) == 1
    assert kinds(await shown(cluster, thread_id)) == ["reply"]


async def test_killed_before_the_ack_nothing_is_done_or_said_twice(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(0)
    worker = await armed(cluster, "before-ack")
    thread_id = await cluster.say("/slow_write w1 0", "acked")
    await killed(worker, "before-ack")
    await cluster.workers.start(1)

    await eventually(cluster.inbox_settled, "the redelivered trigger acknowledged")
    await cluster.settled(thread_id, "done")
    await cluster.audit(thread_id, READ_FLOW)
    assert kinds(await shown(cluster, thread_id)) == ["reply"]
    assert len(await cluster.effects()) == 1


async def test_a_thread_left_running_with_nothing_to_redrive_it_is_swept(start_cluster: StartCluster) -> None:
    """The worker died mid-tool and its inbox entry is gone (dead-lettered, or acknowledged by a
    process that died too): the sweeper finds the thread `running` with no lease and re-drives it."""
    cluster = await start_cluster(0)
    worker = await armed(cluster, "after-tool")
    thread_id = await cluster.say("/slow_write w2 0", "stuck")
    await killed(worker, "after-tool")
    pending: Any = await cluster.client.xpending_range(keys.INBOX, keys.WORKERS_GROUP, "-", "+", 10)
    await cluster.client.xack(keys.INBOX, keys.WORKERS_GROUP, *[p["message_id"] for p in pending])
    assert (await cluster.state(thread_id)).status == "running"
    await cluster.workers.start(1)

    await cluster.settled(thread_id, "awaiting_human")
    await cluster.audit(thread_id, WRITE_INTERRUPTED)
    assert kinds(await shown(cluster, thread_id)) == ["question"]
    assert len(await cluster.effects()) == 1


async def test_a_decision_stored_but_never_enqueued_is_applied(start_cluster: StartCluster) -> None:
    """The API's compare-and-set succeeded, then Redis blipped before the trigger was enqueued: the
    sweeper applies the recorded decision, as the decider, once."""
    cluster = await start_cluster(1)
    thread_id = await cluster.say("/ship v4", "blip")
    approval_id = await cluster.approval_requested(thread_id)
    outcome = await cluster.store.decide(
        approval_id, True, APPROVERS[0], "go", (await cluster.approval(approval_id)).created_at
    )
    assert outcome.outcome == "ok"

    await cluster.settled(thread_id, "done")
    events = await cluster.audit(thread_id, SHIPPED_FLOW)
    assert of_type(events, ev.ApprovalDecided)[0].actor == APPROVERS[0]
    assert await cluster.client.zcard(keys.APPROVALS_DECIDED) == 0
    assert kinds(await shown(cluster, thread_id)) == ["approval_request", "decision_receipt", "reply"]


async def test_a_secret_in_a_message_never_rests_in_redis(start_cluster: StartCluster) -> None:
    """Channels redact triggers before they enter the inbox; events, outbound and dead letters are
    redacted too: no key of any type holds the secret."""
    secret = "s3cr3t-deploy-token-value"
    cluster = await start_cluster(1, DEPLOY_TOKEN=secret)
    cluster.bus.redactor = Redactor({"DEPLOY_TOKEN": secret})  # the test acts as a channel process
    thread_id = await cluster.say(f"/read {secret}", "secret")
    await cluster.say(f"/no_such_tool {secret}", "secret2")
    await cluster.settled(thread_id, "done")
    await eventually(cluster.inbox_settled, "both triggers handled")
    found = [key async for key in _keys_holding(cluster, secret)]
    assert found == []


async def _keys_holding(cluster: Cluster, needle: str) -> Any:
    client = cluster.client
    async for raw_key in client.scan_iter(count=500):
        key = raw_key.decode()
        kind = (await client.type(key)).decode()
        if kind == "string":
            values = [await client.get(key)]
        elif kind == "hash":
            values = list((await client.hgetall(key)).values())
        elif kind == "stream":
            values = [v for _, fields in await client.xrange(key) for v in fields.values()]
        elif kind == "zset":
            values = [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
        elif kind == "list":
            values = await client.lrange(key, 0, -1)
        else:
            values = list(await client.smembers(key))
        if any(needle.encode() in (v if isinstance(v, bytes) else str(v).encode()) for v in values):
            yield key
