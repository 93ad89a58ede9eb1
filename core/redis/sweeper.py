"""Approval deadlines, kept in Redis sorted sets and swept by every worker (no process timers).

- Expiry: a pending approval past its deadline gets an `expire` control trigger (deduplicated,
  so several sweepers publish it once); the worker that takes it expires the approval with a
  compare-and-set and the thread gets an "expired" tool error the agent must handle.
- Reminders: before the deadline, the approvers are reminded where the request was shown.
- Escalation: after `escalate_after`, a second approver group may decide too, and is asked.
- Snoozes: when an approver's "not now" ends, a `wake` control trigger (deduplicated) has a worker
  send the request's cards again (`core.runtime.snoozes`).
Each reminder and escalation is claimed with ZREM, so exactly one sweeper sends it.

It also re-drives what a dead process left half done, each through the inbox with a dedup key, so
racing sweepers publish it once and only a worker under the thread's lease acts on it:
- a thread whose status says work is in flight, quiet for longer than a takeover takes, with no
  lease holder (its trigger was dead-lettered, or acknowledged by a worker that died mid-step):
  a `redrive` control trigger continues it (an interrupted tool becomes "ask a human");
- an approval decided (the API's compare-and-set) that its thread has not applied: the decision
  trigger again, as the decider;
and it trims the inbox and the outboxes this process wrote to, below what is still undelivered.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, Literal

from core.domain import events as ev
from core.domain.ids import new_id
from core.domain.ports import Clock
from core.redis import keys
from core.redis.audit import AuditLog
from core.redis.bus import Bus
from core.redis.store import ApprovalRecord, Store
from core.tools.registry import ToolRegistry

log = logging.getLogger(__name__)
SYSTEM = "system"


class Sweeper:
    def __init__(self, store: Store, bus: Bus, tools: ToolRegistry, clock: Clock) -> None:
        self.store = store
        self.bus = bus
        self.tools = tools
        self.clock = clock
        self._redriven_at = float("-inf")
        self.audit = AuditLog(store)

    @property
    def quiet(self) -> timedelta:
        """How long in-flight work may go unchanged before it counts as abandoned: past any takeover."""
        return timedelta(milliseconds=2 * max(self.bus.claim_idle_ms, self.store.lock_ttl_ms))

    async def sweep(self) -> int:
        """Act on every deadline that has come, and on abandoned work; returns how many actions were taken."""
        now = self.clock.now()
        done = 0
        if time.monotonic() - self._redriven_at >= self.quiet.total_seconds() / 4:
            self._redriven_at = time.monotonic()
            done += await self.redrive(now)
            for stream in (
                keys.INBOX,
                *(keys.outbox(channel) for channel in sorted(self.bus.channels | self.store.channels)),
            ):
                await self.bus.trim(stream)
        for approval_id in await self.store.due(keys.APPROVAL_INDEX, now):
            done += await self._expire(approval_id)
        for approval_id in await self.store.due(keys.APPROVAL_REMINDERS, now):
            if await self.store.take_due(keys.APPROVAL_REMINDERS, approval_id):
                done += await self._remind(approval_id)
        for approval_id in await self.store.due(keys.APPROVAL_ESCALATIONS, now):
            if await self.store.take_due(keys.APPROVAL_ESCALATIONS, approval_id):
                done += await self._escalate(approval_id)
        for approval_id in await self.store.due(keys.APPROVAL_SNOOZES, now):
            done += await self._wake(approval_id)
        return done

    async def redrive(self, now: datetime) -> int:
        """Publish a trigger for each stalled thread and each decided-but-unapplied approval."""
        done = 0
        for thread_id in await self.store.stalled_threads(now - self.quiet):
            state = await self.store.load_state(thread_id)
            log.warning(
                "thread %s: %s with no worker on it since %s; re-driving it", thread_id, state.status, state.updated_at
            )
            trigger = ev.ControlTrigger(
                id=new_id(),
                channel=state.channel,
                conversation=state.conversation,
                sender=SYSTEM,
                thread_id=thread_id,
                action="redrive",
                dedup_key=f"redrive:{thread_id}:{state.seq}",
            )
            done += int(await self.bus.publish(trigger))
        for approval_id in await self.store.decided_unapplied(now - self.quiet / 2):
            done += await self._apply_decided(approval_id)
        done += await self.audit.catch_up_due(now - self.quiet / 2)  # facts a dead worker committed, unaudited
        return done

    async def _apply_decided(self, approval_id: str) -> int:
        record = await self.store.get_approval(approval_id)
        state = await self.store.load_state(record.thread_id) if record else None
        pending = state.pending_approval if state else None
        if record is None or state is None or state.paused or pending is None or pending.approval_id != approval_id:
            await self.store.forget_decided(approval_id)  # applied, moved on, or applied on resume
            return 0
        log.warning(
            "approval %s was %s by %s but never applied to thread %s; applying it",
            approval_id,
            record.status,
            record.decided_by,
            record.thread_id,
        )
        trigger = ev.DecisionTrigger(
            id=new_id(),
            channel=record.channel,
            conversation=record.conversation,
            sender=record.decided_by,
            thread_id=record.thread_id,
            approval_id=approval_id,
            decision="approve" if record.status == "approved" else "reject",
            comment=record.comment,
            dedup_key=f"apply:{approval_id}",
        )
        return int(await self.bus.publish(trigger))

    async def _expire(self, approval_id: str) -> int:
        record = await self.store.get_approval(approval_id)
        if record is None or record.status != "pending":
            await self.store.take_due(keys.APPROVAL_INDEX, approval_id)  # stale entry
            return 0
        return int(await self.bus.publish(_control(record, "expire", f"expire:{approval_id}")))

    async def _wake(self, approval_id: str) -> int:
        """A snooze ended: the trigger first (deduplicated per snooze), then the due entry is dropped, so a
        sweeper that dies between the two leaves it for the next, which publishes nothing twice."""
        record = await self.store.get_approval(approval_id)
        published = False
        if record is not None and record.status == "pending" and record.snoozed_until is not None:
            if record.snoozed_until > self.clock.now():
                return 0  # snoozed again, until later, since `due` read the set: its entry moved with it
            wake = _control(record, "wake", f"wake:{approval_id}:{record.snoozed_until.timestamp()}")
            published = await self.bus.publish(wake)
        await self.store.take_due(keys.APPROVAL_SNOOZES, approval_id)
        return int(published)

    async def _remind(self, approval_id: str) -> int:
        record = await self.store.get_approval(approval_id)
        if record is None or record.status != "pending":
            return 0
        who = self.tools.describe(record.allowed)
        text = (
            f"reminder: approval {approval_id} for {record.tool} is still waiting and expires at "
            f"{record.expires_at:%Y-%m-%d %H:%M} UTC; approvers: {who}. "
            f"Answer with `approve {approval_id}` or `reject {approval_id} <reason>`."
        )
        for channel in _channels(record):
            await self.bus.send(_outbound(record, channel, ev.Notice, text=text))
        return 1

    async def _escalate(self, approval_id: str) -> int:
        if not await self.store.mark_escalated(approval_id):
            return 0
        record = await self.store.get_approval(approval_id)
        if record is None:
            return 0
        log.info("approval %s escalated to %s", approval_id, record.escalate_to)
        snoozed = record.snoozed_until is not None and record.snoozed_until > self.clock.now()
        snoozed_until = record.snoozed_until if snoozed else None
        for channel in _channels(record):
            await self.bus.send(
                _outbound(
                    record,
                    channel,
                    ev.ApprovalRequest,
                    approval_id=approval_id,
                    tool=record.tool,
                    args=record.args,
                    reason=f"escalated: nobody decided yet. {record.reason}".strip(),
                    requester=record.requester,
                    approvers=self.tools.shown_approvers(record.allowed, record.requester, record.allow_self),
                    expires_at=record.expires_at,
                    digest=record.digest,  # its buttons still answer only for this version of the call
                    needed=record.needed,
                    approved_by=[vote.by for vote in record.votes],  # votes are stored only when they count
                    wait_until=record.wait_until,
                    snoozed_until=snoozed_until,
                    snoozed_by=record.snoozed_by if snoozed_until else "",
                    **record.card_preview,
                )
            )
        return 1


def _control(record: ApprovalRecord, action: Literal["expire", "wake"], dedup_key: str) -> ev.ControlTrigger:
    """The sweeper's trigger for `record`'s thread: its deadline passed, or its snooze ended."""
    return ev.ControlTrigger(
        id=new_id(),
        channel=record.channel,
        conversation=record.conversation,
        sender=SYSTEM,
        thread_id=record.thread_id,
        action=action,
        approval_id=record.approval_id,
        dedup_key=dedup_key,
    )


def _channels(record: ApprovalRecord) -> list[str]:
    return [record.channel, *(channel for channel in record.notify if channel != record.channel)]


def _outbound(record: ApprovalRecord, channel: str, kind: type[ev.OutboundT], **fields: Any) -> ev.OutboundT:
    reply_to = record.reply_to if channel == record.channel else {}
    return kind(
        id=new_id(),
        channel=channel,
        conversation=record.conversation,
        thread_id=record.thread_id,
        reply_to=reply_to,
        **fields,
    )
