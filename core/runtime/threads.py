"""The operations on a thread (factor 6): launch, pause, resume, and deciding approvals.

`Threads.handle` applies one trigger from the inbox: a message starts or continues the
conversation's thread (routed first to the agent that should hold it, `core.runtime.router`), a decision
is applied once whatever channel and process it came through, pause and resume are events. Each
then lets `core.runtime.loop.Loop` take the thread's steps.

A worker holds nothing between triggers: each starts from the stored state snapshot, under
the thread's lease, and every write is checked against the sequence number it read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from core.domain import events as ev
from core.domain import people
from core.domain.errors import ApprovalError, ConflictError
from core.domain.ids import new_id, thread_id_for
from core.domain.ports import Clock, Publisher
from core.domain.reducer import ThreadState
from core.model.commands import parse_decision, parse_snooze
from core.obs import logs
from core.obs.metrics import Metrics
from core.redis.store import ApprovalRecord, DecisionWrite, Store
from core.runtime.approvals import REQUESTED_FIELDS, Approvals, already_decided, thread_of, unknown
from core.runtime.asking import ServerQuestions
from core.runtime.grants import check_grant
from core.runtime.loop import Loop, log_step
from core.runtime.roster import Roster
from core.runtime.router import route, starts_turn
from core.runtime.run import Run, notice_to
from core.runtime.snoozes import Snoozes, snooze_of
from core.tools.redact import Redactor
from core.tools.registry import ToolRegistry

CONTEXT_KEY = re.compile(r"^[a-z][a-z_]{0,31}$")  # a trigger's context keys become attributes the model reads


class Threads:
    """The thread service: applies each trigger to its thread under the thread's lease, taking the
    steps with `loop`, gating them with `approvals`, each as the `roster` agent that holds the thread.
    Its collaborators are built by the composition root (`bot.main.build_wiring`) and handed in."""

    def __init__(
        self,
        *,
        store: Store,
        publisher: Publisher,
        tools: ToolRegistry,
        loop: Loop,
        approvals: Approvals,
        roster: Roster,
        clock: Clock,
        redactor: Redactor,
        metrics: Metrics | None = None,
        answerers: Callable[[ThreadState, str], bool] | None = None,
        questions: ServerQuestions | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.tools = tools
        self.loop = loop
        self.approvals = approvals
        self.roster = roster
        self.clock = clock
        self.redactor = redactor
        self.metrics = metrics
        # Who else may answer a thread's question (the MCP server's questions: `core.runtime.external`).
        self.answerers = answerers
        # The questions MCP servers ask while their tool runs: answered before the lease, which the call holds.
        self.questions = questions
        self.snoozes = Snoozes(store, approvals, clock, publisher, self._run)  # "not now" on an approval

    # --- the operations (factor 6) ----------------------------------------------------------

    async def handle(self, trigger: ev.Trigger) -> None:
        """Apply one trigger from the inbox; safe to call again with the same trigger."""
        match trigger:
            case ev.MessageTrigger() if (answer := parse_decision(trigger.text)) is not None:
                decision = ev.DecisionTrigger(
                    **trigger.model_dump(include={"id", "channel", "conversation", "sender", "reply_to"}),
                    approval_id=answer.approval_id,
                    decision="approve" if answer.approve else "reject",
                    comment=answer.comment,
                )
                await self.decide(decision)
            case ev.MessageTrigger() if (asked := parse_snooze(trigger.text)) is not None:
                snooze = snooze_of(trigger, asked)
                await (self._refuse(trigger, snooze) if isinstance(snooze, str) else self.snoozes.snooze(snooze))
            case ev.MessageTrigger():
                await self.launch(trigger)
            case ev.DecisionTrigger():
                await self.decide(trigger)
            case ev.SnoozeTrigger():
                await self.snoozes.snooze(trigger)
            case ev.ControlTrigger(action="wake"):
                await self.snoozes.wake(trigger)
            case ev.ControlTrigger(action="pause"):
                await self.pause(trigger)
            case ev.ControlTrigger(action="expire"):
                await self.expire(trigger)
            case ev.ControlTrigger(action="redrive"):
                await self.resume(trigger)
            case ev.ControlTrigger(action="undeliverable"):
                await self.undeliverable(trigger)
            case ev.ControlTrigger():
                await self.resume(trigger)

    async def launch(self, trigger: ev.MessageTrigger) -> None:
        """Start a thread, or add the message to the conversation's thread, and advance it."""
        thread_id = trigger.thread_id or thread_id_for(trigger.channel, trigger.conversation)
        if self.questions is not None and await self.questions.take(thread_id, trigger):
            return
        async with self.store.lock(thread_id) as leased:
            run = self._run(leased.state)
            if trigger.id not in run.state.recent_triggers:
                if trigger.answers and (refusal := self._refusal_to_answer(run.state, trigger)):
                    return await self._refuse(trigger, refusal)
                if run.state.seq == 0 and not self.tools.may_start(trigger.sender, trigger.channel):
                    return await self._refuse(
                        trigger,
                        f"{people.who(trigger.sender)} may not start threads on {trigger.channel}: that needs "
                        f"[access].start.{trigger.channel}. Nothing was done; ask someone on that list",
                    )
                if trigger.agent and trigger.agent not in self.roster:
                    agents = ", ".join(self.roster.names())
                    return await self._refuse(trigger, f"there is no agent {trigger.agent!r}; agents: {agents}")
                await self._accept_message(run, trigger)
            await self.loop.advance(run)
            await run.finish()

    async def pause(self, trigger: ev.ControlTrigger) -> None:
        async with self.store.lock(trigger.thread_id) as leased:
            run = self._run(leased.state)
            if run.state.seq == 0:
                return await self._refuse(trigger, f"there is no thread {trigger.thread_id!r}; see `bot thread list`")
            if run.state.paused:
                if trigger.id in run.state.recent_triggers:  # stored by a worker that died before the ack
                    return None
                return await self._refuse(trigger, f"thread {trigger.thread_id} is already paused; nothing changed")
            run.say(
                f"thread paused by {people.who(trigger.sender)}; resume it with `bot thread resume {trigger.thread_id}`"
            )
            await run.commit(ev.Paused(**run.meta(trigger.sender), reason=trigger.reason, trigger_id=trigger.id))

    async def resume(self, trigger: ev.ControlTrigger) -> None:
        async with self.store.lock(trigger.thread_id) as leased:
            run = self._run(leased.state)
            if run.state.seq == 0:
                return await self._refuse(trigger, f"there is no thread {trigger.thread_id!r}; see `bot thread list`")
            if not run.state.paused:
                if (
                    trigger.action == "redrive" or trigger.id in run.state.recent_triggers
                ):  # finish a dead worker's work
                    await self.loop.advance(run)
                    return await run.finish()
                return await self._refuse(trigger, f"thread {trigger.thread_id} is not paused; nothing changed")
            if trigger.action == "redrive":
                return None  # a paused thread waits for a person to resume it
            run.say(f"thread resumed by {people.who(trigger.sender)}")
            await run.commit(ev.Resumed(**run.meta(trigger.sender), trigger_id=trigger.id))
            await self._apply_held_verdict(run, trigger)
            await self.loop.advance(run)
            await run.finish()

    async def undeliverable(self, trigger: ev.ControlTrigger) -> None:
        """A channel gave up on one of the thread's messages: the thread records it, so people can see it."""
        async with self.store.lock(trigger.thread_id) as leased:
            run = self._run(leased.state)
            if run.state.seq == 0 or trigger.id in run.state.recent_triggers:
                return
            failed = ev.DeliveryFailed(
                **run.meta("system"),
                outbound_id=trigger.outbound_id,
                channel=trigger.channel,
                outbound_kind=trigger.outbound_kind,
                error=trigger.reason[:500],
                trigger_id=trigger.id,
            )
            await run.commit(failed)

    async def _apply_held_verdict(self, run: Run, trigger: ev.ControlTrigger) -> None:
        """An approval decided (or expired) while the thread was paused takes effect now."""
        pending = run.state.pending_approval
        record = await self.store.get_approval(pending.approval_id) if pending else None
        if record is None or record.status == "pending":
            return
        if record.status == "expired":
            return await self._apply_expiry(run, record, trigger.id)
        decision = ev.DecisionTrigger(
            id=trigger.id,
            channel=run.state.channel,
            conversation=run.state.conversation,
            sender=record.decided_by,
            approval_id=record.approval_id,
            decision="approve" if record.status == "approved" else "reject",
        )
        await self._apply_decision(run, decision, record)

    async def decide(self, trigger: ev.DecisionTrigger) -> None:
        """Apply an approve / reject answer once, whatever channel and process it came through.

        When the trigger names its thread, the lease, the thread's state and the approval are read in
        one round trip, and the decision is stored with the step it starts in a second one.
        """
        thread_id = await thread_of(self.store, trigger)
        if thread_id is None:
            return await self._refuse(trigger, unknown(trigger.approval_id))
        async with self.store.lock(thread_id, approval_id=trigger.approval_id) as leased:
            record = leased.approval
            if record is None or record.thread_id != thread_id:
                return await self._refuse(trigger, unknown(trigger.approval_id))
            run = self._run(leased.state)
            if refusal := self.approvals.refusal_to_decide(trigger, record):
                return await self._refuse(trigger, refusal)
            pending = run.state.pending_approval
            awaited = pending is not None and pending.approval_id == record.approval_id
            if not awaited:
                if trigger.id in run.state.recent_triggers:  # a redelivery of what was applied: finish its work
                    await self.loop.advance(run)
                    return await run.finish()
                return await self._refuse(trigger, self._not_awaited(record))
            if record.status == "pending":
                if not await self._answer_pending(run, trigger, record):
                    return None
            elif record.status == "expired":
                return await self._refuse(trigger, self.approvals.expired(record))
            elif record.decided_by != trigger.sender:
                return await self._refuse(trigger, already_decided(record))
            elif run.state.paused:
                return await self._refuse(trigger, held(record))
            else:  # decided through the API, or re-driven by the sweeper: apply what is recorded
                write = DecisionWrite(
                    record.approval_id,
                    record.status == "approved",
                    record.decided_by,
                    record.comment,
                    self.clock.now(),
                    recorded=True,
                )
                await self._apply_decision(run, trigger, record, write)
            await self.loop.advance(run)
            await run.finish()

    async def _answer_pending(self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> bool:
        """A decision, or an edit, of a pending approval; False when the thread does not move on."""
        try:
            check_grant(self.loop.grants, trigger, record)  # one asked for with it (`approve <id> grant 4h`)
            edit = self.approvals.edit_of(trigger, record)
        except ApprovalError as exc:
            await self._refuse(trigger, str(exc))
            return False
        if edit is not None:
            return await self._edit(run, trigger, record, *edit)
        return await self._decide_pending(run, trigger, record)

    async def _decide_pending(self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> bool:
        """Decide a pending approval with this answer; False when the thread does not move on (refused,
        held while paused, or one approval of a quorum that is not complete)."""
        if record.expires_at <= self.clock.now():
            await self._refuse(trigger, self.approvals.expired(record))
            return False
        if trigger.decision == "approve" and record.needed > 1:
            try:
                record = await self.approvals.vote(trigger, record)
            except ApprovalError as exc:
                await self._refuse(trigger, str(exc))
                return False
            if not self.approvals.complete(record):
                await self._record_vote(run, trigger, record)
                return False
        if run.state.paused:  # recorded now; it takes effect when the thread is resumed
            await self._decide_while_paused(run, trigger, record)
            return False
        write = DecisionWrite(
            record.approval_id, trigger.decision == "approve", trigger.sender, trigger.comment, self.clock.now()
        )
        decided = record.model_copy(
            update={
                "status": "approved" if write.approved else "rejected",
                "decided_by": write.by,
                "decided_at": write.args()[2],
                "comment": write.comment,
            }
        )
        await self._apply_decision(run, trigger, decided, write)
        return True

    async def _edit(
        self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord, after: dict[str, Any], comment: str
    ) -> bool:
        """An approval with edited arguments: the request for the old ones ends ("edited", in the commit that
        records the edit and the new request); the editor's approval then decides the new one when it is
        enough, else the new card waits for the approvals its policy needs. False when the thread waits."""
        now = self.clock.now()
        if record.expires_at <= now:
            await self._refuse(trigger, self.approvals.expired(record))
            return False
        if run.state.paused:
            await self._refuse(trigger, f"thread {run.state.thread_id} is paused; resume it, then edit the call")
            return False
        new = self.approvals.edited(record, after, trigger)
        edited = ev.ArgumentsEdited(
            **run.meta(trigger.sender),
            approval_id=record.approval_id,
            call_id=record.call_id,
            tool=record.tool,
            before=record.args,
            after=after,
            by=trigger.sender,
            channel=trigger.channel,
            digest_before=record.digest,
            digest_after=new.digest,
            trigger_id=trigger.id,
        )
        complete = self.approvals.complete(new)
        previewed: list[ev.Event] = []
        if not complete and self.approvals.previews is not None:  # the new card shows the edited call's plan
            spec = self.tools.get(record.tool)
            if (preview := await self.approvals.previews.run(run, record.call_id, after, spec)) is not None:
                new = new.model_copy(update=preview.on_record(new.args_hash))
                previewed.append(preview.event(run))
        requested = ev.ApprovalRequested(
            **run.meta(), **new.model_dump(include=REQUESTED_FIELDS), expires_at=new.expires_at
        )
        events: list[ev.Event] = [edited, *previewed, requested]
        if new.votes and not complete:
            events.append(self._voted(run, trigger, new))
        await self.store.create_approval(new)  # first, as when a request is opened: see `Approvals.open`
        run.say(
            f"{people.who(trigger.sender)} edited {record.tool} before approving ({edited.changes}); the request "
            f"for the earlier arguments ({record.approval_id}) ended, and its buttons no longer answer"
        )
        if not complete:
            run.outbox += self.approvals.cards(run, new)
        write = DecisionWrite(record.approval_id, False, trigger.sender, "", now, edited=True)
        try:
            await run.commit(*events, decision=write)
        except ConflictError:  # decided or expired meanwhile: nothing was written
            current = await self.store.get_approval(record.approval_id)
            await self._refuse(trigger, self._not_awaited(current or record))
            return False
        if not complete:
            progress = self.approvals.progress(new) if new.votes else f"it needs {new.needed} approvals"
            run.outbox.append(notice_to(trigger, f"your edit is recorded as approval {new.approval_id}: {progress}"))
            await run.finish()
            return False
        approval = DecisionWrite(new.approval_id, True, trigger.sender, comment, now)
        decided = new.model_copy(
            update={"status": "approved", "decided_by": trigger.sender, "decided_at": approval.args()[2]}
        )
        await self._apply_decision(run, trigger, decided.model_copy(update={"comment": comment}), approval)
        return True

    def _voted(self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> ev.ApprovalVoted:
        return ev.ApprovalVoted(
            **run.meta(trigger.sender),
            approval_id=record.approval_id,
            call_id=record.call_id,
            by=trigger.sender,
            channel=trigger.channel,
            count=len(self.approvals.counted(record)),
            needed=record.needed,
            trigger_id=trigger.id,
        )

    def _not_awaited(self, record: ApprovalRecord) -> str:
        if record.status == "expired":
            return self.approvals.expired(record)
        if record.status == "edited":
            return (
                f"approval {record.approval_id} was replaced when {people.who(record.decided_by)} edited its "
                "arguments; answer the new request in the thread. Nothing changed"
            )
        if record.status == "pending":
            return f"approval {record.approval_id} is no longer awaited by its thread; nothing changed"
        return already_decided(record)

    async def _record_vote(self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> None:
        """An approval towards a quorum it does not complete: recorded in the thread, the cards updated."""
        progress = self.approvals.progress(record)
        if trigger.id in run.state.recent_triggers:  # a redelivery of a vote recorded already
            return None
        if trigger.sender in run.state.approval_votes:
            return await self._refuse(trigger, f"you approved {record.approval_id} already: {progress}")
        voted = self._voted(run, trigger, record)
        run.outbox += self.approvals.cards(run, record)
        run.outbox.append(notice_to(trigger, f"your approval counts: {progress}", level="info"))
        await run.commit(voted)
        await run.finish()

    async def _decide_while_paused(self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> None:
        outcome = await self.store.decide(
            record.approval_id, trigger.decision == "approve", trigger.sender, trigger.comment, self.clock.now()
        )
        if outcome.outcome != "ok":
            current = await self.store.get_approval(record.approval_id)
            return await self._refuse(trigger, already_decided(current or record))
        status = "approved" if trigger.decision == "approve" else "rejected"
        await self._refuse(trigger, held(record.model_copy(update={"status": status})))

    async def expire(self, trigger: ev.ControlTrigger) -> None:
        """The approval's deadline passed without a decision: the agent gets an "expired" result."""
        outcome = await self.store.expire(trigger.approval_id, self.clock.now())
        if outcome.outcome not in ("ok", "expired"):
            return  # decided in time, or not due yet
        record = await self.store.get_approval(trigger.approval_id)
        if record is None:
            return
        async with self.store.lock(record.thread_id) as leased:
            run = self._run(leased.state)
            pending = run.state.pending_approval
            if pending is None or pending.approval_id != record.approval_id or run.state.paused:
                return  # applied already (a redelivery), or held until the thread is resumed
            await self._apply_expiry(run, record, trigger.id)
            await self.loop.advance(run)
            await run.finish()

    async def _apply_expiry(self, run: Run, record: ApprovalRecord, trigger_id: str) -> None:
        expired = ev.ApprovalDecided(
            **run.meta("system"),
            approval_id=record.approval_id,
            call_id=record.call_id,
            decision="expire",
            trigger_id=trigger_id,
        )
        who = self.tools.describe(record.allowed)
        text = f"approval {record.approval_id} expired at {people.when(record.expires_at)} with no decision from {who}"
        receipt = run.out(
            ev.DecisionReceipt,
            approval_id=record.approval_id,
            decision="expire",
            by="system",
            at=expired.at,
            tool=record.tool,
        )
        run.outbox.append(receipt)
        _notify_copies(run, record, receipt)
        await run.commit(expired, run.error(record.call_id, record.tool, text, "expired"))

    # --- decisions --------------------------------------------------------------------------

    async def _apply_decision(
        self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord, write: DecisionWrite | None = None
    ) -> None:
        """Record the decision with what follows from it, in one commit (with `write`, the approval's
        compare-and-set too); on approval the stored call then runs."""
        decided = ev.ApprovalDecided(
            **run.meta(record.decided_by),
            approval_id=record.approval_id,
            call_id=record.call_id,
            decision="approve" if record.status == "approved" else "reject",
            comment=record.comment,
            trigger_id=trigger.id,
            channel=trigger.channel,
            approved_by=[vote.by for vote in self.approvals.counted(record)] if record.status == "approved" else [],
            override_by=self.approvals.overridden_by(record) if record.status == "approved" else "",
        )
        receipt = run.out(
            ev.DecisionReceipt,
            approval_id=record.approval_id,
            decision=decided.decision,
            by=record.decided_by,
            comment=record.comment,
            at=decided.at,
            tool=record.tool,
        )
        run.outbox.append(receipt)
        if (trigger.channel, trigger.conversation) != (receipt.channel, receipt.conversation):
            # The decider answered somewhere else (another channel, the approval email): tell them there too.
            there = {"channel": trigger.channel, "conversation": trigger.conversation, "reply_to": trigger.reply_to}
            run.outbox.append(receipt.model_copy(update={"id": new_id(), **there}))
        _notify_copies(run, record, receipt, skip={trigger.channel})
        started, outcome = time.perf_counter(), "rejected"
        if decided.decision == "reject":
            reason = f"rejected by {people.who(record.decided_by)}: {record.comment or 'no reason given'}"
            await run.commit(decided, run.error(record.call_id, record.tool, reason, "rejected"), decision=write)
        elif refusal := self.approvals.refusal_to_run(run, record):
            await run.commit(decided, run.error(record.call_id, record.tool, refusal, "rejected"), decision=write)
        else:
            spec = self.tools.get(record.tool)
            grants = self.loop.grants
            given = grants.given(run, trigger, record) if grants is not None else None
            granted = [given[1]] if given else []
            outcome = await self.loop.execute(run, spec, record.call_id, record.args, decided, *granted, decision=write)
            if grants is not None and given is not None:  # stored once recorded: a crash before leaves no grant
                await grants.keep(given[0])
        log_step(run.state.steps, record.tool, outcome, started)  # the step that asked for the approval ends

    # --- plumbing ---------------------------------------------------------------------------

    async def _accept_message(self, run: Run, trigger: ev.MessageTrigger) -> None:
        """Record the message; one that starts a turn goes to the agent the router picks (same thread)."""
        state = run.state
        chosen = route(self.roster, state, trigger.text, trigger.agent) if starts_turn(state) else None
        new: list[ev.Event] = []
        if state.seq == 0:
            new.append(
                ev.ThreadStarted(
                    **run.meta(trigger.sender),
                    agent=chosen.agent if chosen else self.roster.default,
                    channel=trigger.channel,
                    conversation=trigger.conversation,
                    requester=trigger.sender,
                    reply_to=trigger.reply_to,
                )
            )
        elif chosen is not None and chosen.agent != state.agent:
            new.append(
                ev.HandedOff(**run.meta(trigger.sender), from_agent=state.agent, to_agent=chosen.agent, note=chosen.why)
            )
        if state.status == "awaiting_human" and self._may_answer(state, trigger.sender):
            choice = chosen_option(state.question_options, trigger.text)
            new.append(
                ev.HumanAnswer(**run.meta(trigger.sender), text=trigger.text, trigger_id=trigger.id, choice=choice)
            )
        else:  # a new turn, or a remark while someone else's question is open (recorded for the model)
            context = {key: value for key, value in trigger.context.items() if CONTEXT_KEY.match(key)}
            new.append(
                ev.UserMessage(**run.meta(trigger.sender), text=trigger.text, trigger_id=trigger.id, context=context)
            )
        await run.commit(*new)
        if run.state.paused:
            run.say(f"thread {state.thread_id} is paused; your message is saved and will be read on resume")
        elif run.state.status == "awaiting_approval" and (pending := run.state.pending_approval):
            run.say(
                f"still waiting for approval {pending.approval_id} ({pending.tool}); "
                "your message is saved and will be read after the decision"
            )

    def _may_answer(self, state: ThreadState, sender: str) -> bool:
        """The model's question is the requester's to answer (or the turn's author's, or whom it names);
        an escalation (a stop of ours) anyone in the conversation may answer."""
        if not state.question_call:
            return True
        if sender in (state.requester, state.last_actor, state.question_asks):
            return True
        return self.answerers is not None and self.answerers(state, sender)

    def _refusal_to_answer(self, state: ThreadState, trigger: ev.MessageTrigger) -> str | None:
        """Why a choice button's click may not answer: its question is answered already, or not theirs."""
        if state.status != "awaiting_human" or state.question_call != trigger.answers:
            return "that question was already answered; nothing changed. Write here to go on"
        if not self._may_answer(state, trigger.sender):
            asked = state.question_asks or state.last_actor or state.requester
            return f"this question is for {people.who(asked)} to answer; nothing changed"
        return None

    def _run(self, state: ThreadState) -> Run:
        logs.bind(thread_id=state.thread_id, agent=state.agent)
        return Run(
            state=state,
            store=self.store,
            clock=self.clock,
            redactor=self.redactor,
            metrics=self.metrics,
            publisher=self.publisher,
        )

    async def _refuse(self, trigger: ev.Trigger, text: str) -> None:
        await self.publisher.send(notice_to(trigger, text))


def chosen_option(options: tuple[str, ...], text: str) -> str:
    """The option an answer picks: by its number (`2`) or its text, case aside; "" for a free answer."""
    answer = text.strip().rstrip(".").strip()
    if answer.isdigit() and 1 <= int(answer) <= len(options):
        return options[int(answer) - 1]
    return next((option for option in options if option.casefold() == answer.casefold()), "")


def held(record: ApprovalRecord) -> str:
    return (
        f"approval {record.approval_id} is {record.status}; thread {record.thread_id} is paused, so "
        "it takes effect when the thread is resumed"
    )


def _notify_copies(run: Run, record: ApprovalRecord, receipt: ev.DecisionReceipt, skip: set[str] | None = None) -> None:
    """Channels the policy also sent the request to (`notify`) learn the outcome, so their cards update."""
    for channel in record.notify:
        if channel != receipt.channel and channel not in (skip or set()):
            run.outbox.append(receipt.model_copy(update={"id": new_id(), "channel": channel, "reply_to": {}}))
