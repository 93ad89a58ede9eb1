"""Approval deadlines live in Redis: expiry, reminders and escalation, each acted on once."""

from __future__ import annotations

import asyncio

from core.domain import events as ev
from core.redis.sweeper import Sweeper
from tests.conftest import APPROVER

TOOLS = (
    "[groups]\noncall = ['cli:operator']\nleads = ['cli:lee']\n"
    "[tools.failover]\ndescription = 'Fail over the database.'\nexecutor = {kind='command', argv=['echo', 'failed over']}\n"
    "approval = {required=true, approvers=['group:oncall'], allow_self=false, expires_in=600, remind_before=120, "
    "escalate_to=['group:leads'], escalate_after=300}\n"
)


def _harness(make_harness, client, tmp_path):
    tools = tmp_path / "tools.toml"
    tools.write_text(TOOLS)
    h = make_harness(client, BOT_TOOLS_FILE=str(tools))
    h.user = "cli:requester"
    return h


def _sweepers(h, n: int = 2) -> list[Sweeper]:
    wiring = h.wiring
    return [Sweeper(wiring.store, wiring.bus, wiring.tools, h.clock) for _ in range(n)]


async def test_an_approval_left_alone_expires_once_and_the_agent_is_told(redis_client, make_harness, tmp_path) -> None:
    h = _harness(make_harness, redis_client, tmp_path)
    await h.say("/failover")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    sweepers = _sweepers(h, 3)
    assert [await s.sweep() for s in sweepers] == [0, 0, 0], "nothing is due yet"
    h.clock.advance(601)
    await asyncio.gather(*(s.sweep() for s in sweepers))
    await h.drain()
    state = (await h.wiring.store.list_threads())[0]
    events = await h.wiring.store.load_events(state.thread_id)
    expired = [e for e in events if isinstance(e, ev.ToolErrorEvent) and e.kind == "expired"]
    assert len(expired) == 1 and f"approval {approval.approval_id} expired" in expired[0].error
    assert state.status == "done" and state.pending_approval is None
    receipts = [o for o in await h.outbox() if isinstance(o, ev.DecisionReceipt)]
    assert [(r.decision, r.by) for r in receipts] == [("expire", "system")]
    ended = await h.wiring.store.ended_approvals("expired")
    assert [record.approval_id for record in ended] == [approval.approval_id], "listed once, as expired"
    await h.say(f"approve {approval.approval_id}", sender="cli:operator")
    assert "expired" in (await h.outbox())[-1].text
    assert [e.type for e in await h.wiring.store.load_events(state.thread_id)].count("tool_started") == 0


async def test_reminders_go_out_once_before_the_deadline(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/failover")
    h.clock.advance(481)
    sweepers = _sweepers(h, 2)
    await asyncio.gather(*(s.sweep() for s in sweepers))
    await asyncio.gather(*(s.sweep() for s in sweepers))
    reminders = [o for o in await h.outbox() if isinstance(o, ev.Notice) and o.text.startswith("reminder:")]
    assert len(reminders) == 1 and "expires at" in reminders[0].text


async def test_escalation_lets_the_second_group_decide(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/failover")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"approve {approval.approval_id}", sender="cli:lee")
    assert "<who:cli:lee> may not decide" in (await h.outbox())[-1].text
    h.clock.advance(301)
    for sweeper in _sweepers(h, 2):
        await sweeper.sweep()
    asks = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]
    assert len(asks) == 2 and asks[1].approvers == [APPROVER, "cli:operator", "cli:lee"]
    await h.say(f"approve {approval.approval_id}", sender="cli:lee")
    assert [o.text for o in await h.outbox() if isinstance(o, ev.Reply)] == ["failed over"]
