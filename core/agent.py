"""The control flow (factor 8): what happens after each tool call.

- Immediate tools run and the loop continues.
- A gated tool records an approval request and the thread waits until a decision arrives;
  on approval the *stored* call runs after the approver's permission is checked again
  (`core.approvals`).
- `ask_human` waits for an answer; `reply` ends the turn.
- A failed or invalid call becomes a one-line error event; `error_limit` in a row, or
  the agent's step limit in one turn, escalate to a human instead of spinning.
- Each thread is held by one agent of the roster (`core.agents`): its prompt and model, its tools
  and its step limit apply. `hand_to_<agent>` moves the thread; a message that starts a turn is
  routed first (`core.router`). A workflow is an agent whose model is plain Python.

A worker holds nothing between triggers: each starts from the stored state snapshot, under
the thread's lease, and every write is checked against the sequence number it read.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import events as ev
from core import logs
from core.agents import Profile, Roster
from core.approvals import Approvals, already_decided
from core.commands import parse_decision
from core.errors import ApprovalError, InvalidToolCall, LLMBadResponse, LLMError, ToolError
from core.executors import CallContext, ToolRunner
from core.ids import new_id, thread_id_for
from core.llm import Decision, Model, ModelRequest
from core.metrics import Metrics
from core.ports import Clock, Publisher
from core.redact import Redactor
from core.reducer import ThreadState
from core.router import route, starts_turn
from core.run import Run, notice_to
from core.store import ApprovalRecord, Store
from core.tools import ToolRegistry, ToolSpec


@dataclass(frozen=True)
class Limits:
    step_limit: int = 12
    error_limit: int = 3


@dataclass(frozen=True)
class Models:
    """`command` runs slash commands; `language` reads free text, when a model is configured."""

    command: Model
    language: Model | None = None


class Agent:
    def __init__(
        self,
        *,
        agent_name: str,
        store: Store,
        publisher: Publisher,
        tools: ToolRegistry,
        runner: ToolRunner,
        models: Models,
        clock: Clock,
        redactor: Redactor,
        limits: Limits = Limits(),
        metrics: Metrics | None = None,
        roster: Roster | None = None,
    ) -> None:
        self.name = agent_name
        self.store = store
        self.publisher = publisher
        self.tools = tools
        self.runner = runner
        self.models = models
        self.clock = clock
        self.redactor = redactor
        self.limits = limits
        self.metrics = metrics
        self.approvals = Approvals(store, tools, clock)  # every tool: a stored call runs whoever holds the thread
        self.roster = roster or Roster.single(agent_name, tools, models.language, limits.step_limit)

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
            case ev.MessageTrigger():
                await self.launch(trigger)
            case ev.DecisionTrigger():
                await self.decide(trigger)
            case ev.ControlTrigger(action="pause"):
                await self.pause(trigger)
            case ev.ControlTrigger(action="expire"):
                await self.expire(trigger)
            case ev.ControlTrigger():
                await self.resume(trigger)

    async def launch(self, trigger: ev.MessageTrigger) -> None:
        """Start a thread, or add the message to the conversation's thread, and advance it."""
        thread_id = trigger.thread_id or thread_id_for(trigger.channel, trigger.conversation)
        async with self.store.lock(thread_id):
            run = await self._load(thread_id)
            if trigger.id not in run.state.recent_triggers:
                if trigger.agent and trigger.agent not in self.roster:
                    agents = ", ".join(self.roster.names())
                    return await self._refuse(trigger, f"there is no agent {trigger.agent!r}; agents: {agents}")
                await self._accept_message(run, trigger)
            await self._advance(run)
            await run.flush(self.publisher)

    async def pause(self, trigger: ev.ControlTrigger) -> None:
        async with self.store.lock(trigger.thread_id):
            run = await self._load(trigger.thread_id)
            if run.state.seq == 0:
                return await self._refuse(trigger, f"there is no thread {trigger.thread_id!r}; see `bot thread list`")
            if run.state.paused:
                return await self._refuse(trigger, f"thread {trigger.thread_id} is already paused; nothing changed")
            await run.commit(ev.Paused(**run.meta(trigger.sender), reason=trigger.reason))
            run.say(f"thread paused by {trigger.sender}; resume it with `bot thread resume {trigger.thread_id}`")
            await run.flush(self.publisher)

    async def resume(self, trigger: ev.ControlTrigger) -> None:
        async with self.store.lock(trigger.thread_id):
            run = await self._load(trigger.thread_id)
            if run.state.seq == 0:
                return await self._refuse(trigger, f"there is no thread {trigger.thread_id!r}; see `bot thread list`")
            if not run.state.paused:
                return await self._refuse(trigger, f"thread {trigger.thread_id} is not paused; nothing changed")
            await run.commit(ev.Resumed(**run.meta(trigger.sender)))
            run.say(f"thread resumed by {trigger.sender}")
            await self._apply_held_verdict(run, trigger)
            await self._advance(run)
            await run.flush(self.publisher)

    async def _apply_held_verdict(self, run: Run, trigger: ev.ControlTrigger) -> None:
        """An approval decided (or expired) while the thread was paused takes effect now."""
        pending = run.state.pending_approval
        record = await self.store.get_approval(pending.approval_id) if pending else None
        if record is None or record.status == "pending":
            return
        if record.status == "expired":
            return await self._apply_expiry(run, record, trigger.id)
        decision = ev.DecisionTrigger(
            id=trigger.id, channel=run.state.channel, conversation=run.state.conversation, sender=record.decided_by,
            approval_id=record.approval_id, decision="approve" if record.status == "approved" else "reject",
        )  # fmt: skip
        await self._apply_decision(run, decision, record)

    async def decide(self, trigger: ev.DecisionTrigger) -> None:
        """Apply an approve / reject answer once, whatever channel and process it came through."""
        try:
            record = await self.approvals.decide(trigger)
        except ApprovalError as exc:
            return await self._refuse(trigger, str(exc))
        async with self.store.lock(record.thread_id):
            run = await self._load(record.thread_id)
            pending = run.state.pending_approval
            if pending is None or pending.approval_id != record.approval_id:
                if trigger.id not in run.state.recent_triggers:  # not a redelivery of what was applied
                    await self._refuse(trigger, already_decided(record))
                return
            if run.state.paused:  # the decision is recorded; it takes effect when the thread is resumed
                note = f"approval {record.approval_id} is {record.status}; thread {record.thread_id} is paused, so "
                await self._refuse(trigger, note + "it takes effect when the thread is resumed")
                return
            await self._apply_decision(run, trigger, record)
            await self._advance(run)
            await run.flush(self.publisher)

    async def expire(self, trigger: ev.ControlTrigger) -> None:
        """The approval's deadline passed without a decision: the agent gets an "expired" result."""
        outcome = await self.store.expire(trigger.approval_id, self.clock.now())
        record = await self.store.get_approval(trigger.approval_id)
        if outcome.outcome not in ("ok", "expired") or record is None:
            return  # decided in time, or not due yet
        async with self.store.lock(record.thread_id):
            run = await self._load(record.thread_id)
            pending = run.state.pending_approval
            if pending is None or pending.approval_id != record.approval_id or run.state.paused:
                return  # applied already (a redelivery), or held until the thread is resumed
            await self._apply_expiry(run, record, trigger.id)
            await self._advance(run)
            await run.flush(self.publisher)

    async def _apply_expiry(self, run: Run, record: ApprovalRecord, trigger_id: str) -> None:
        expired = ev.ApprovalDecided(
            **run.meta("system"), approval_id=record.approval_id, call_id=record.call_id, decision="expire",
            trigger_id=trigger_id,
        )  # fmt: skip
        who = self.tools.describe(record.allowed)
        text = f"approval {record.approval_id} expired at {record.expires_at:%Y-%m-%d %H:%M} UTC with no decision from {who}"
        await run.commit(expired, run.error(record.call_id, record.tool, text, "expired"))
        run.send(ev.DecisionReceipt, approval_id=record.approval_id, decision="expire", by="system", at=expired.at)

    # --- decisions --------------------------------------------------------------------------

    async def _apply_decision(self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> None:
        decided = ev.ApprovalDecided(
            **run.meta(record.decided_by),
            approval_id=record.approval_id,
            call_id=record.call_id,
            decision="approve" if record.status == "approved" else "reject",
            comment=record.comment,
            trigger_id=trigger.id,
        )
        receipt = run.out(
            ev.DecisionReceipt,
            approval_id=record.approval_id,
            decision=decided.decision,
            by=record.decided_by,
            comment=record.comment,
            at=decided.at,
        )
        run.outbox.append(receipt)
        if (trigger.channel, trigger.conversation) != (receipt.channel, receipt.conversation):
            # The decider answered somewhere else (another channel, the approval email): tell them there too.
            there = {"channel": trigger.channel, "conversation": trigger.conversation, "reply_to": trigger.reply_to}
            run.outbox.append(receipt.model_copy(update={"id": new_id(), **there}))
        # The decision is stored with what follows from it: one append, then the tool runs.
        if decided.decision == "reject":
            reason = f"rejected by {record.decided_by}: {record.comment or 'no reason given'}"
            await run.commit(decided, run.error(record.call_id, record.tool, reason, "rejected"))
        elif refusal := self.approvals.refusal_to_run(run, record):
            await run.commit(decided, run.error(record.call_id, record.tool, refusal, "rejected"))
        else:
            await self._execute(run, self.tools.get(record.tool), record.call_id, record.args, decided)

    # --- the loop ---------------------------------------------------------------------------

    async def _advance(self, run: Run) -> None:
        """Take steps while the thread is running and not paused, each as the agent that holds it then."""
        await self._recover_interrupted(run)
        while run.state.status == "running" and not run.state.paused:
            state, profile = run.state, self.roster.get(run.state.agent)
            if state.consecutive_errors >= self.limits.error_limit:
                reason = f"{state.consecutive_errors} failed steps in a row, the last: {state.last_outcome}."
                return await self._escalate(run, f"{reason} Tell me how to continue.")
            if state.turn_steps >= profile.step_limit:
                reason = f"I reached the limit of {profile.step_limit} steps for this request."
                return await self._escalate(run, f"{reason} Tell me how to continue.")
            decision = await self._decide_next(run, profile)
            if decision is not None:
                await self._step(run, decision, profile)

    def _model(self, state: ThreadState, profile: Profile) -> Model:
        """A workflow decides every step; an agent reads free text with its model, when it has one."""
        if profile.model is not None and (profile.kind == "workflow" or state.turn_mode == "model"):
            return profile.model
        return self.models.command

    async def _decide_next(self, run: Run, profile: Profile) -> Decision | None:
        model = self._model(run.state, profile)
        if model.needs_history and run.history is None:
            run.history = await self.store.load_events(run.state.thread_id)
        caller = run.state.last_actor or run.state.requester
        request = ModelRequest(state=run.state, tools=profile.tools, caller=caller, history=run.history or [])
        try:
            decision = await model.decide(request)
        except LLMBadResponse as exc:
            await run.commit(*run.usage(exc.usage), run.error(new_id(), "", str(exc), "invalid"))
            return None
        except LLMError as exc:
            await self._escalate(run, f"the model is unavailable: {exc}. Your request is saved; answer here to retry.")
            return None
        if decision.usage is not None:
            await run.commit(*run.usage(decision.usage))
        return decision

    async def _step(self, run: Run, decision: Decision, profile: Profile) -> None:
        call_id = decision.call_id or new_id()
        args = decision.args if isinstance(decision.args, dict) else {"_raw": decision.args}
        call = ev.ToolCall(**run.meta(), call_id=call_id, tool=decision.tool, args=args, reason=decision.reason)
        try:
            spec = self._checked(run, decision, profile.tools)
        except ToolError as exc:
            await run.commit(call, run.error(call_id, decision.tool, str(exc), "invalid"))
            return
        match profile.effect(spec, args):
            case "reply":
                await run.commit(call, ev.AgentReply(**run.meta(), text=args["message"]))
                run.send(ev.Reply, text=run.state.last_outcome)
            case "ask_human":
                await run.commit(call, ev.HumanQuestion(**run.meta(), call_id=call_id, question=args["question"]))
                run.send(ev.Question, question=args["question"])
            case "hand_off":
                to = profile.handoffs[spec.name]
                handed = ev.HandedOff(
                    **run.meta(), from_agent=profile.name, to_agent=to, note=args["note"], call_id=call_id
                )
                await run.commit(call, handed)
                logs.bind(agent=to)
            case "approval":
                await self.approvals.open(run, call, spec)
            case "run":
                await self._execute(run, spec, call_id, args, call)

    def _checked(self, run: Run, decision: Decision, tools: ToolRegistry) -> ToolSpec:
        """The tool is one of the agent's, the arguments fit its schema, and the caller may use it."""
        spec = tools.get(decision.tool)
        tools.validate(decision.tool, decision.args)
        caller = run.state.last_actor or run.state.requester
        if not tools.may_call(caller, spec):
            raise InvalidToolCall(f"{caller} may not use {spec.name}; allowed: {tools.describe(spec.callers)}")
        return spec

    async def _execute(
        self, run: Run, spec: ToolSpec, call_id: str, args: dict[str, object], *before: ev.Event
    ) -> None:
        """Run a tool; `before` (the call, or the approval) is appended with ToolStarted in one round trip."""
        await run.commit(*before, ev.ToolStarted(**run.meta(), call_id=call_id, tool=spec.name))
        ctx = CallContext(thread_id=run.state.thread_id, call_id=call_id, requester=run.state.requester)
        try:
            output = await self.runner.run(spec, args, ctx)
        except ToolError as exc:
            await run.commit(run.error(call_id, spec.name, str(exc), "failed"))
            return
        await run.commit(
            ev.ToolResult(
                **run.meta(f"tool:{spec.name}"),
                call_id=call_id,
                tool=spec.name,
                output=output.text,
                duration_ms=output.duration_ms,
            )
        )

    async def _recover_interrupted(self, run: Run) -> None:
        """A tool started by a worker that died: never re-run it blindly unless it is idempotent."""
        running = run.state.running
        if running is None or run.state.paused:
            return
        spec = self.tools.get(running.tool) if running.tool in self.tools else None
        last = run.state.last_call
        if spec is not None and spec.idempotent and last is not None and last.call_id == running.call_id:
            await self._execute(run, spec, running.call_id, last.args)
            return
        msg = f"{running.tool} was interrupted (the worker stopped) and may or may not have run"
        await run.commit(run.error(running.call_id, running.tool, msg, "interrupted"))
        await self._escalate(run, f"{msg}. Check its effect, then tell me whether to run it again.")

    async def _escalate(self, run: Run, reason: str) -> None:
        await run.commit(ev.Escalated(**run.meta(), reason=reason))
        run.send(ev.Question, question=reason)

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
                    agent=chosen.agent if chosen else self.name,
                    channel=trigger.channel,
                    conversation=trigger.conversation,
                    requester=trigger.sender,
                    reply_to=trigger.reply_to,
                )
            )
        elif chosen is not None and chosen.agent != state.agent:
            new.append(ev.HandedOff(**run.meta(trigger.sender), from_agent=state.agent, to_agent=chosen.agent,
                                    note=chosen.why))  # fmt: skip
        kind = ev.HumanAnswer if state.status == "awaiting_human" else ev.UserMessage
        new.append(kind(**run.meta(trigger.sender), text=trigger.text, trigger_id=trigger.id))
        await run.commit(*new)
        if run.state.paused:
            run.say(f"thread {state.thread_id} is paused; your message is saved and will be read on resume")
        elif run.state.status == "awaiting_approval" and (pending := run.state.pending_approval):
            run.say(
                f"still waiting for approval {pending.approval_id} ({pending.tool}); "
                "your message is saved and will be read after the decision"
            )

    async def _load(self, thread_id: str) -> Run:
        state = await self.store.load_state(thread_id)
        logs.bind(thread_id=thread_id, agent=state.agent)
        return Run(state=state, store=self.store, clock=self.clock, redactor=self.redactor, metrics=self.metrics)

    async def _refuse(self, trigger: ev.Trigger, text: str) -> None:
        await self.publisher.send(notice_to(trigger, text))
