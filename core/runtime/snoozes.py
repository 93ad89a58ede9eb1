"""Not now: an approver snoozes an approval request, and its card is asked again when the snooze ends.

A snooze is no decision: the approval stays pending, anyone allowed may still decide it meanwhile, and its
expiry, reminder and escalation keep their own clock (none of its deadlines moves). Only someone who may
decide it may snooze it, and a snooze must end before the request expires: a card that came back to an
expired request could not be answered. The end is a due time in Redis (`keys.APPROVAL_SNOOZES`) that the
sweeper turns into a `wake` control trigger; the worker that takes it sends the cards again, under the
thread's lease, if the request still waits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from core.domain import events as ev
from core.domain.durations import words
from core.domain.events import SHORT_DIGEST
from core.domain.people import when, who
from core.domain.ports import Clock, Publisher
from core.domain.reducer import ThreadState
from core.model.commands import SnoozeText, snooze_seconds
from core.redis.store import ApprovalRecord, Store
from core.runtime.approvals import Approvals, already_decided, thread_of, unknown
from core.runtime.run import Run, notice_to


def snooze_of(trigger: ev.MessageTrigger, text: SnoozeText) -> ev.SnoozeTrigger | str:
    """The snooze a `snooze <id> 30m` message asks for, or why its duration cannot be one."""
    try:
        length = snooze_seconds(text.duration)
    except ValueError as exc:
        return f"{exc}; snooze with e.g. `snooze {text.approval_id} 30m`. Nothing changed."
    return ev.SnoozeTrigger(
        **trigger.model_dump(include={"id", "channel", "conversation", "sender", "reply_to"}),
        approval_id=text.approval_id,
        seconds=length,
    )


class Snoozes:
    """Snoozing and waking approval requests; `run` makes a thread's working copy (`Threads._run`)."""

    def __init__(
        self, store: Store, approvals: Approvals, clock: Clock, publisher: Publisher, run: Callable[[ThreadState], Run]
    ) -> None:
        self.store = store
        self.approvals = approvals
        self.clock = clock
        self.publisher = publisher
        self._run = run

    async def snooze(self, trigger: ev.SnoozeTrigger) -> None:
        """Record the snooze, tell the requester, mark the cards; refuse (to the sender only) what may not."""
        thread_id = await thread_of(self.store, trigger)
        if thread_id is None:
            return await self._refuse(trigger, unknown(trigger.approval_id))
        async with self.store.lock(thread_id, approval_id=trigger.approval_id) as leased:
            record = leased.approval
            if record is None or record.thread_id != thread_id:
                return await self._refuse(trigger, unknown(trigger.approval_id))
            run = self._run(leased.state)
            if trigger.id in run.state.recent_triggers:  # a redelivery of a snooze recorded already
                return None
            now = self.clock.now()
            until = now + timedelta(seconds=trigger.seconds)
            if refusal := self.refusal(trigger, record, run.state):
                return await self._refuse(trigger, refusal)
            outcome = await self.store.snooze(record.approval_id, until, trigger.sender, now)
            if outcome != "ok":
                current = await self.store.get_approval(record.approval_id) or record
                return await self._refuse(trigger, self._why_not(current, trigger, outcome))
            snoozed = record.model_copy(update={"snoozed_until": until, "snoozed_by": trigger.sender})
            event = ev.ApprovalSnoozed(
                **run.meta(trigger.sender),
                approval_id=record.approval_id,
                call_id=record.call_id,
                by=trigger.sender,
                channel=trigger.channel,
                until=until,
                trigger_id=trigger.id,
            )
            run.outbox += self.approvals.cards(run, snoozed)
            told = (
                f"{who(trigger.sender)} snoozed the approval for {record.tool} until {when(until)}; it will be "
                f"asked again then (it still expires at {when(record.expires_at)}, and may be decided meanwhile)"
            )
            run.say(told)
            if (trigger.channel, trigger.conversation) != (run.state.channel, run.state.conversation):
                run.outbox.append(notice_to(trigger, told, level="info"))  # the snoozer answered somewhere else
            await run.commit(event)

    async def wake(self, trigger: ev.ControlTrigger) -> None:
        """A snooze ended: the request's cards again (without the snooze), if the thread still awaits it."""
        record = await self.store.get_approval(trigger.approval_id)
        now = self.clock.now()
        if record is None or record.status != "pending" or not _due(record, now):
            return  # decided or expired meanwhile, or snoozed again until later
        async with self.store.lock(record.thread_id) as leased:
            run = self._run(leased.state)
            pending = run.state.pending_approval
            if pending is None or pending.approval_id != record.approval_id or record.expires_at <= now:
                return
            awake = record.model_copy(update={"snoozed_until": None, "snoozed_by": ""})
            run.outbox += [card.model_copy(update={"asked_again": True}) for card in self.approvals.cards(run, awake)]
            run.say(
                f"approval {record.approval_id} for {record.tool} is asked again: {who(record.snoozed_by)} "
                f"snoozed it until {when(record.snoozed_until or now)}; it expires at {when(record.expires_at)}"
            )
            await run.finish()

    def refusal(self, trigger: ev.SnoozeTrigger, record: ApprovalRecord, state: ThreadState) -> str | None:
        """Why `trigger.sender` may not snooze `record` now for `trigger.seconds`, or None."""
        tools = self.approvals.tools
        if not tools.may_approve(trigger.sender, record.allowed, record.requester, record.allow_self):
            return (
                f"{who(trigger.sender)} may not snooze approval {record.approval_id}: only someone who may decide "
                f"it can ({tools.describe(record.allowed)}). Nothing changed."
            )
        answered = trigger.digest.strip().lower()
        if answered and record.digest and not record.digest.startswith(answered):
            return (
                f"your answer was for another version of this call (digest {answered[:SHORT_DIGEST]}); approval "
                f"{record.approval_id} covers {record.tool} with digest {record.digest[:SHORT_DIGEST]}. Nothing changed."
            )
        pending = state.pending_approval
        if record.status != "pending" or pending is None or pending.approval_id != record.approval_id:
            return self._why_not(record, trigger, record.status)
        now = self.clock.now()
        if record.expires_at <= now:
            return self.approvals.expired(record)
        if now + timedelta(seconds=trigger.seconds) >= record.expires_at:
            return self._why_not(record, trigger, "too_late")
        return None

    def _why_not(self, record: ApprovalRecord, trigger: ev.SnoozeTrigger, outcome: str) -> str:
        if outcome in ("late", "expired"):
            return self.approvals.expired(record)
        if outcome == "missing":
            return unknown(record.approval_id)
        if outcome == "too_late":
            left = int((record.expires_at - self.clock.now()).total_seconds())
            return (
                f"approval {record.approval_id} expires at {when(record.expires_at)}, before a snooze of "
                f"{words(trigger.seconds)} would end; snooze it for less than {words(max(left, 0))}, or decide it "
                "now. Nothing changed."
            )
        if outcome == "pending":
            return f"approval {record.approval_id} is no longer awaited by its thread; nothing changed"
        return already_decided(record)

    async def _refuse(self, trigger: ev.Trigger, text: str) -> None:
        await self.publisher.send(notice_to(trigger, text))


def _due(record: ApprovalRecord, now: datetime) -> bool:
    return record.snoozed_until is not None and record.snoozed_until <= now
