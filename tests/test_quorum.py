"""Quorum approvals, wait timers and validity windows, through real threads on the terminal's channel.

The rules are code (`core.domain.quorum`, `core.runtime.approvals`): N distinct approvers or one from
each named group, the requester never counted unless allowed, the first rejection ends the request,
no approval before the wait, an approval not acted on within `valid_for` lapses.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from core.domain import events as ev
from core.domain import quorum

POLICY = "required=true, approvers=['group:oncall'], allow_self=false, expires_in=3600"
TOOLS = (
    "[groups]\noncall = ['cli:alice', 'cli:bob', 'cli:carol', 'cli:dana']\nleads = ['cli:lee', 'cli:bob']\n"
    "[tools.failover]\ndescription = 'Fail over the database.'\n"
    "executor = {kind='command', argv=['echo', 'failed over']}\n"
    "approval = {%s}\n"
)


def _harness(make_harness, client, tmp_path, policy: str):
    tools = tmp_path / "tools.toml"
    tools.write_text(TOOLS % policy)
    h = make_harness(client, BOT_TOOLS_FILE=str(tools))
    h.user = "cli:dana"  # on call herself: the requester, who never counts
    return h


async def _requested(h) -> ev.ApprovalRequest:
    await h.say("/failover")
    return next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))


async def _events(h) -> list[ev.Event]:
    state = (await h.wiring.store.list_threads())[0]
    return await h.wiring.store.load_events(state.thread_id)


async def _control(h, thread_id: str, action: str) -> None:
    control = ev.ControlTrigger(
        id=f"{action}-1",
        channel="cli",
        conversation=h.conversation,
        sender="cli:dana",
        thread_id=thread_id,
        action=action,
    )
    await h.wiring.bus.publish(control)
    await h.drain()


async def _last_text(h) -> str:
    last = (await h.outbox())[-1]
    assert isinstance(last, ev.Notice | ev.Reply), last
    return last.text


async def test_two_of_three_with_the_requester_excluded_and_a_third_approver_late(
    redis_client, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, redis_client, tmp_path, f"{POLICY}, approvals=2")
    card = await _requested(h)
    assert (card.needed, card.approved_by) == (2, [])
    assert len(card.digest) == 64 and card.short == card.digest[:12]

    await h.say(f"approve {card.approval_id}", sender="cli:dana")
    assert "you requested it" in await _last_text(h)
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert "your approval counts: 1 of 2 approvals for failover (<who:cli:alice>); waiting for 1 more" in (
        await _last_text(h)
    )
    updated = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)][-1]
    assert (updated.approval_id, updated.approved_by) == (card.approval_id, ["cli:alice"]), "the card, updated"
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert "you approved" in await _last_text(h) and "1 of 2" in await _last_text(h)
    assert not [e for e in await _events(h) if isinstance(e, ev.ToolStarted)], "one approval is not enough"

    await h.say(f"approve {card.approval_id}", sender="cli:bob")
    assert [o.text for o in await h.outbox() if isinstance(o, ev.Reply)] == ["failed over"]
    await h.say(f"approve {card.approval_id}", sender="cli:carol")
    assert "already approved" in await _last_text(h)

    events = await _events(h)
    assert [e.by for e in events if isinstance(e, ev.ApprovalVoted)] == ["cli:alice"]
    decided = next(e for e in events if isinstance(e, ev.ApprovalDecided))
    assert (decided.actor, decided.approved_by, decided.channel) == ("cli:bob", ["cli:alice", "cli:bob"], "cli")
    assert [type(e) for e in events].count(ev.ToolStarted) == 1
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and [v.by for v in record.votes] == ["cli:alice", "cli:bob"]


async def test_the_first_rejection_ends_a_quorum(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, f"{POLICY}, approvals=2")
    card = await _requested(h)
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    await h.say(f"reject {card.approval_id} not during the sale", sender="cli:carol")
    errors = [e for e in await _events(h) if isinstance(e, ev.ToolErrorEvent)]
    assert [e.kind for e in errors] == ["rejected"] and "not during the sale" in errors[0].error
    await h.say(f"approve {card.approval_id}", sender="cli:bob")
    assert "already rejected" in await _last_text(h)


async def test_one_approver_from_each_group(fake_redis, make_harness, tmp_path) -> None:
    """bob is in both groups: he fills whichever leaves the other fillable; a second oncall member fills nothing."""
    policy = "required=true, from_groups=['oncall', 'leads'], allow_self=false, expires_in=3600"
    h = _harness(make_harness, fake_redis, tmp_path, policy)
    card = await _requested(h)
    assert card.open_groups == ["oncall", "leads"]
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert "still needs an approver from the leads group" in await _last_text(h)
    await h.say(f"approve {card.approval_id}", sender="cli:carol")
    assert "fills no group still open" in await _last_text(h)
    await h.say(f"approve {card.approval_id}", sender="cli:bob")
    assert [o.text for o in await h.outbox() if isinstance(o, ev.Reply)] == ["failed over"]


async def test_no_approval_before_the_wait(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, f"{POLICY}, wait='5m'")
    card = await _requested(h)
    assert card.wait_until == h.clock.now() + timedelta(minutes=5), "the card counts down to it"
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert "can be given from" in await _last_text(h) and "waits 5m" in await _last_text(h)
    h.clock.advance(300)
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert [o.text for o in await h.outbox() if isinstance(o, ev.Reply)] == ["failed over"]


async def test_a_rejection_needs_no_wait(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, f"{POLICY}, wait='5m'")
    card = await _requested(h)
    await h.say(f"reject {card.approval_id} wrong database", sender="cli:alice")
    assert [e.kind for e in await _events(h) if isinstance(e, ev.ToolErrorEvent)] == ["rejected"]


async def test_an_approval_not_acted_on_within_valid_for_lapses(fake_redis, make_harness, tmp_path) -> None:
    """alice's approval is 11 minutes old when bob's arrives: only bob's counts, and alice must approve again."""
    h = _harness(make_harness, fake_redis, tmp_path, f"{POLICY}, approvals=2, valid_for='10m'")
    card = await _requested(h)
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    h.clock.advance(11 * 60)
    await h.say(f"approve {card.approval_id}", sender="cli:bob")
    assert "1 of 2 approvals for failover (<who:cli:bob>)" in await _last_text(h)
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert [o.text for o in await h.outbox() if isinstance(o, ev.Reply)] == ["failed over"]


async def test_an_approval_held_by_a_pause_past_valid_for_does_not_run(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, f"{POLICY}, valid_for='10m'")
    card = await _requested(h)
    state = (await h.wiring.store.list_threads())[0]
    await _control(h, state.thread_id, "pause")
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    h.clock.advance(15 * 60)
    await _control(h, state.thread_id, "resume")
    errors = [e for e in await _events(h) if isinstance(e, ev.ToolErrorEvent)]
    assert [e.kind for e in errors] == ["rejected"] and "lapsed before the call could run" in errors[0].error
    assert not [e for e in await _events(h) if isinstance(e, ev.ToolStarted)]


async def test_a_decision_for_another_digest_is_refused(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, POLICY)
    card = await _requested(h)
    stale = ev.DecisionTrigger(
        **h.trigger("", sender="cli:alice").model_dump(include={"id", "channel", "conversation", "sender"}),
        approval_id=card.approval_id,
        decision="approve",
        digest="0123456789ab",
    )
    await h.wiring.bus.publish(stale)
    await h.drain()
    assert "another version of this call (digest 0123456789ab)" in await _last_text(h)
    fresh = stale.model_copy(update={"id": "t-fresh", "digest": card.short})
    await h.wiring.bus.publish(fresh)
    await h.drain()
    assert [o.text for o in await h.outbox() if isinstance(o, ev.Reply)] == ["failed over"]


async def test_approvers_at_the_same_moment_make_one_quorum(redis_client, make_harness, tmp_path) -> None:
    """Three approvers of a 2-of-N quorum through the API's path at once: two count, the call runs once."""
    h = _harness(make_harness, redis_client, tmp_path, f"{POLICY}, approvals=2")
    card = await _requested(h)
    approvals = h.wiring.threads.approvals

    async def approve(sender: str) -> str:
        trigger = ev.DecisionTrigger(
            id=f"t-{sender}",
            channel="api",
            conversation="c",
            sender=sender,
            approval_id=card.approval_id,
            decision="approve",
        )
        try:
            return (await approvals.decide(trigger)).status
        except Exception as exc:  # noqa: BLE001 - the refusal is the outcome this test counts
            return type(exc).__name__

    outcomes = await asyncio.gather(*(approve(s) for s in ("cli:alice", "cli:bob", "cli:carol")))
    assert sorted(outcomes) == ["ApprovalError", "approved", "pending"], outcomes
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and record.status == "approved" and len(record.votes) == 2


def test_a_maximum_matching_fills_groups_whatever_the_order() -> None:
    groups = {"oncall": {"bob", "carol"}, "leads": {"bob"}}

    def member(who: str, group: str) -> bool:
        return who in groups[group]

    at = datetime(2026, 12, 4, tzinfo=UTC)
    bob_first = [quorum.Vote(by="bob", at=at)]
    assert quorum.adds(bob_first, "carol", ["oncall", "leads"], member), "bob moves to leads, carol fills oncall"
    both = [*bob_first, quorum.Vote(by="carol", at=at)]
    assert quorum.counted(both, ["oncall", "leads"], member) == 2
    assert quorum.open_slots(both, ["oncall", "leads"], member) == []
    assert not quorum.adds([quorum.Vote(by="carol", at=at)], "alice", ["oncall", "leads"], member)
