"""Not now: an approver snoozes a card without deciding it; the card comes back when the snooze ends.

Through real threads on the terminal's channel, the sweeper driven by an injected clock: the requester is
told, the card is marked and then asked again, the deadlines keep their clock, and only an approver may.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core.domain import events as ev
from core.domain.people import plain
from core.model.commands import parse_snooze
from core.redis import keys
from core.redis.audit import AuditLog
from core.redis.sweeper import Sweeper

TOOLS = (
    "[groups]\noncall = ['cli:operator', 'cli:dana']\nleads = ['cli:lee']\n"
    "[tools.failover]\ndescription = 'Fail over the database.'\nexecutor = {kind='command', argv=['echo', 'failed over']}\n"
    "approval = {required=true, approvers=['group:oncall'], allow_self=false, expires_in=3600, remind_before=600, "
    "escalate_to=['group:leads'], escalate_after=1200}\n"
)


def _harness(make_harness, client, tmp_path):
    tools = tmp_path / "tools.toml"
    tools.write_text(TOOLS)
    h = make_harness(client, BOT_TOOLS_FILE=str(tools))
    h.user = "cli:requester"
    return h


async def _requested(h) -> ev.ApprovalRequest:
    await h.say("/failover")
    return next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))


async def _sweep(h, n: int = 2) -> None:
    wiring = h.wiring
    sweepers = [Sweeper(wiring.store, wiring.bus, wiring.tools, h.clock) for _ in range(n)]
    await asyncio.gather(*(s.sweep() for s in sweepers))
    await h.drain()


def _cards(outbox: list[ev.Outbound]) -> list[ev.ApprovalRequest]:
    """The request's cards, leaving out the escalation's (it keeps its own clock)."""
    return [o for o in outbox if isinstance(o, ev.ApprovalRequest) and not o.reason.startswith("escalated")]


def _texts(outbox: list[ev.Outbound]) -> list[str]:
    return [plain(o.text) for o in outbox if isinstance(o, ev.Notice | ev.Reply)]


def test_snooze_text_is_read_with_or_without_a_duration() -> None:
    assert parse_snooze("snooze ab12cd 30m") == parse_snooze("Snooze AB12CD for 30m")
    assert parse_snooze("snooze ab12cd 30m").duration == "30m"  # type: ignore[union-attr]
    assert parse_snooze("snooze ab12cd").duration == ""  # type: ignore[union-attr]
    assert parse_snooze("not now, thanks") is None, "a phrase, not a command"
    assert parse_snooze("snooze the deploy until tomorrow please") is None


async def test_a_snooze_tells_the_requester_and_the_card_comes_back_when_it_ends(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    card = await _requested(h)
    before = await h.wiring.store.get_approval(card.approval_id)
    await h.say(f"snooze {card.approval_id} 30m", sender="cli:dana")

    outbox = await h.outbox()
    marked = [o for o in outbox if isinstance(o, ev.ApprovalRequest) and o.snoozed_until is not None]
    assert len(marked) == 1 and marked[0].snoozed_by == "cli:dana"
    told = [t for t in _texts(outbox) if "snoozed the approval for failover" in t]
    assert told and told[0].startswith("dana snoozed") and "asked again" in told[0], _texts(outbox)
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and before is not None
    assert record.status == "pending" and record.snoozed_by == "cli:dana"
    assert (record.expires_at, record.remind_at, record.escalate_at) == (
        before.expires_at,
        before.remind_at,
        before.escalate_at,
    ), "a snooze moves no deadline"
    state = (await h.wiring.store.list_threads())[0]
    events = await h.wiring.store.load_events(state.thread_id)
    assert [e.by for e in events if isinstance(e, ev.ApprovalSnoozed)] == ["cli:dana"]
    assert state.status == "awaiting_approval"
    audited = await AuditLog(h.wiring.store).thread_records(state.thread_id)
    assert [(r.fact, r.who) for r in audited if r.fact == "snoozed"] == [("snoozed", "cli:dana")]

    h.clock.advance(29 * 60)
    await _sweep(h)
    assert len(_cards(await h.outbox())) == 2, "not back yet"
    h.clock.advance(61)
    await _sweep(h, 3)
    await _sweep(h, 2)  # swept again: the card comes back once
    requests = _cards(await h.outbox())
    assert len(requests) == 3 and requests[-1].snoozed_until is None
    assert any("is asked again" in t for t in _texts(await h.outbox()))

    await h.say(f"approve {card.approval_id}", sender="cli:dana")
    assert "failed over" in _texts(await h.outbox())


async def test_reminders_and_escalation_keep_their_clock_while_snoozed(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    card = await _requested(h)
    await h.say(f"snooze {card.approval_id} 50m", sender="cli:dana")
    h.clock.advance(1201)  # escalation is due at 20 minutes, inside the snooze
    await _sweep(h)
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and record.escalated
    h.clock.advance(50 * 60 - 1201 + 1)  # the reminder (10 minutes before expiry) and the snooze's end
    await _sweep(h)
    texts = _texts(await h.outbox())
    assert sum(t.startswith("reminder:") for t in texts) == 1
    assert any("is asked again" in t for t in texts)
    h.clock.advance(10 * 60)
    await _sweep(h)
    await _sweep(h)
    refreshed = await h.wiring.store.get_approval(card.approval_id)
    assert refreshed is not None and refreshed.status == "expired", "it expires when it always would"


async def test_only_an_approver_may_snooze_and_not_past_the_expiry(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    card = await _requested(h)
    await h.say(f"snooze {card.approval_id} 30m", sender="cli:mallory")
    assert "may not snooze" in _texts(await h.outbox())[-1]
    await h.say(f"snooze {card.approval_id} 30m")  # the requester, who may not approve their own
    assert "may not snooze" in _texts(await h.outbox())[-1]
    await h.say(f"snooze {card.approval_id} 2h", sender="cli:dana")
    refused = _texts(await h.outbox())[-1]
    assert "expires at" in refused and "snooze it for less than 1h" in refused, refused
    await h.say(f"snooze {card.approval_id} soon", sender="cli:dana")
    assert "is not a duration" in _texts(await h.outbox())[-1]
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and record.snoozed_until is None
    assert not await h.wiring.store.due(keys.APPROVAL_SNOOZES, h.clock.now() + timedelta(days=1))


async def test_a_card_decided_while_snoozed_does_not_come_back(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    card = await _requested(h)
    await h.say(f"snooze {card.approval_id} 10m", sender="cli:dana")
    await h.say(f"reject {card.approval_id} not today", sender="cli:operator")
    shown = len([o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)])
    h.clock.advance(11 * 60)
    await _sweep(h)
    assert len([o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]) == shown
    assert not any("is asked again" in t for t in _texts(await h.outbox()))
    await h.say(f"snooze {card.approval_id} 10m", sender="cli:dana")
    assert "already rejected" in _texts(await h.outbox())[-1]


async def test_a_snooze_delivered_twice_is_recorded_once(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    card = await _requested(h)
    snooze = ev.SnoozeTrigger(
        id="snooze-1", channel="cli", conversation=h.conversation, sender="cli:dana", approval_id=card.approval_id
    )
    for _ in range(2):
        await h.wiring.threads.handle(snooze)
    state = (await h.wiring.store.list_threads())[0]
    events = await h.wiring.store.load_events(state.thread_id)
    assert [e.until for e in events if isinstance(e, ev.ApprovalSnoozed)] == [h.clock.now() + timedelta(minutes=30)]


async def test_a_card_sent_again_during_a_snooze_stays_marked(fake_redis, make_harness, tmp_path) -> None:
    """An escalation (or a quorum's vote) re-sends the card while it is snoozed: the copy still says so,
    and carries the request's digest like the first card."""
    h = _harness(make_harness, fake_redis, tmp_path)
    card = await _requested(h)
    await h.say(f"snooze {card.approval_id} 50m", sender="cli:dana")
    h.clock.advance(1201)
    await _sweep(h)
    escalated = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest) and o.reason.startswith("escalated")]
    assert escalated and escalated[-1].snoozed_by == "cli:dana" and escalated[-1].snoozed_until is not None
    assert escalated[-1].digest == card.digest
    h.clock.advance(50 * 60 - 1201 + 1)
    await _sweep(h)
    back = _cards(await h.outbox())[-1]
    assert back.snoozed_until is None and back.snoozed_by == "", "asked again: no longer marked"
