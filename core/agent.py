"""The control flow (factor 8): what happens after each tool call.

- Immediate tools run and the loop continues.
- A gated tool records an approval request and the thread pauses until a decision arrives;
  on approval the *stored* call runs after the approver's permission is checked again.
- `ask_human` pauses for an answer; `reply` ends the turn.
- A failed or invalid call becomes a one-line error event; `error_limit` in a row, or
  `step_limit` steps in one turn, escalate to a human instead of spinning.

A worker holds nothing between triggers: each starts from the stored state snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

from core import events as ev
from core.commands import parse_decision
from core.errors import ApprovalError, InvalidToolCall, LLMBadResponse, LLMError, ToolError
from core.executors import CallContext, ToolRunner
from core.ids import new_approval_id, new_id, thread_id_for
from core.llm import Decision, Model, ModelRequest, Usage
from core.ports import Clock, Publisher
from core.redact import Redactor
from core.reducer import ThreadState, replay
from core.store import ApprovalRecord, Store
from core.tools import ASK_HUMAN, REPLY, ToolRegistry, ToolSpec, args_hash

log = logging.getLogger(__name__)
AGENT_ACTOR = "agent"


class Meta(TypedDict):
    id: str
    at: datetime
    actor: str


@dataclass(frozen=True)
class Limits:
    step_limit: int = 12
    error_limit: int = 3


@dataclass(frozen=True)
class Models:
    """`command` runs slash commands; `language` reads free text, when a model is configured."""

    command: Model
    language: Model | None = None


@dataclass
class Run:
    """One worker's working copy of a thread while it handles one trigger."""

    state: ThreadState
    history: list[ev.Event] | None = None
    outbox: list[ev.Outbound] = field(default_factory=list)


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

    # --- the three operations (factor 6) ----------------------------------------------------

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
            case ev.ControlTrigger():
                await self.resume(trigger)

    async def launch(self, trigger: ev.MessageTrigger) -> None:
        """Start a thread, or add the message to the conversation's thread, and advance it."""
        thread_id = trigger.thread_id or thread_id_for(trigger.channel, trigger.conversation)
        async with self.store.lock(thread_id):
            run = await self._load(thread_id)
            if trigger.id not in run.state.recent_triggers:
                await self._accept_message(run, trigger)
            await self._advance(run)
            await self._flush(run)

    async def pause(self, trigger: ev.ControlTrigger) -> None:
        async with self.store.lock(trigger.thread_id):
            run = await self._load(trigger.thread_id)
            if run.state.seq == 0:
                return await self._refuse(trigger, f"there is no thread {trigger.thread_id!r}; see `bot thread list`")
            if run.state.paused:
                return await self._refuse(trigger, f"thread {trigger.thread_id} is already paused; nothing changed")
            await self._commit(run, ev.Paused(**self._meta(trigger.sender), reason=trigger.reason))
            await self._say(
                run, f"thread paused by {trigger.sender}; resume it with `bot thread resume {trigger.thread_id}`"
            )
            await self._flush(run)

    async def resume(self, trigger: ev.ControlTrigger) -> None:
        async with self.store.lock(trigger.thread_id):
            run = await self._load(trigger.thread_id)
            if run.state.seq == 0:
                return await self._refuse(trigger, f"there is no thread {trigger.thread_id!r}; see `bot thread list`")
            if not run.state.paused:
                return await self._refuse(trigger, f"thread {trigger.thread_id} is not paused; nothing changed")
            await self._commit(run, ev.Resumed(**self._meta(trigger.sender)))
            await self._say(run, f"thread resumed by {trigger.sender}")
            await self._advance(run)
            await self._flush(run)

    async def decide(self, trigger: ev.DecisionTrigger) -> None:
        """Apply an approve / reject answer once, whatever channel and process it came through."""
        try:
            record = await self._checked_decision(trigger)
        except ApprovalError as exc:
            return await self._refuse(trigger, str(exc))
        async with self.store.lock(record.thread_id):
            await self._apply_decision(trigger, record)

    async def _apply_decision(self, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> None:
        run = await self._load(record.thread_id)
        pending = run.state.pending_approval
        if pending is None or pending.approval_id != record.approval_id:
            if trigger.id not in run.state.recent_triggers:
                await self._refuse(trigger, f"approval {record.approval_id} is no longer awaited by its thread")
            return
        approved = record.status == "approved"
        decided = ev.ApprovalDecided(
            **self._meta(record.decided_by),
            approval_id=record.approval_id,
            call_id=record.call_id,
            decision="approve" if approved else "reject",
            comment=record.comment,
            trigger_id=trigger.id,
        )
        await self._commit(run, decided)
        fields: dict[str, Any] = {
            "approval_id": record.approval_id,
            "decision": decided.decision,
            "by": record.decided_by,
            "comment": record.comment,
            "at": decided.at,
        }
        run.outbox.append(self._out(run.state, ev.DecisionReceipt, **fields))
        if trigger.channel != run.state.channel or trigger.conversation != run.state.conversation:
            run.outbox.append(
                ev.DecisionReceipt(
                    id=new_id(),
                    channel=trigger.channel,
                    conversation=trigger.conversation,
                    thread_id=run.state.thread_id,
                    reply_to=trigger.reply_to,
                    **fields,
                )
            )
        if approved:
            await self._run_approved(run, record)
        else:
            reason = record.comment or "no reason given"
            await self._commit(
                run, self._error(record.call_id, record.tool, f"rejected by {record.decided_by}: {reason}", "rejected")
            )
        await self._advance(run)
        await self._flush(run)

    # --- decisions --------------------------------------------------------------------------

    async def _checked_decision(self, trigger: ev.DecisionTrigger) -> ApprovalRecord:
        """Check permission, then compare-and-set; returns the decided record or raises ApprovalError."""
        record = await self.store.get_approval(trigger.approval_id)
        if record is None:
            raise ApprovalError(f"there is no approval {trigger.approval_id!r}; check the id in the approval request")
        if not self.tools.may_approve(trigger.sender, record.approvers, record.requester, record.allow_self):
            who = self.tools.describe(record.approvers)
            own = " (you requested it and this tool needs someone else)" if trigger.sender == record.requester else ""
            raise ApprovalError(
                f"{trigger.sender} may not decide approval {record.approval_id}{own}; "
                f"allowed approvers: {who}. Nothing changed."
            )
        outcome = await self.store.decide(
            record.approval_id, trigger.decision == "approve", trigger.sender, trigger.comment, self.clock.now()
        )
        if outcome.outcome == "ok":
            return await self._reload_approval(record.approval_id)
        if outcome.outcome == "expired":
            raise ApprovalError(
                f"approval {record.approval_id} expired at {record.expires_at:%Y-%m-%d %H:%M} UTC; "
                "ask for the action again"
            )
        if outcome.outcome in ("approved", "rejected"):
            # Decided already: either by someone else (refuse) or by this same trigger before a crash (finish it).
            decided = await self._reload_approval(record.approval_id)
            state = await self.store.load_state(record.thread_id)
            if state.pending_approval and state.pending_approval.approval_id == record.approval_id:
                return decided
            raise ApprovalError(
                f"approval {record.approval_id} was already {outcome.outcome} by "
                f"{outcome.decided_by} at {outcome.decided_at}; nothing changed"
            )
        raise ApprovalError(f"there is no approval {trigger.approval_id!r}; check the id in the approval request")

    async def _reload_approval(self, approval_id: str) -> ApprovalRecord:
        record = await self.store.get_approval(approval_id)
        assert record is not None, "an approval record never disappears once decided"
        return record

    async def _run_approved(self, run: Run, record: ApprovalRecord) -> None:
        pending = run.state.pending_approval
        spec = self.tools.get(record.tool)
        if record.args_hash != args_hash(record.tool, record.args) or (
            pending and pending.args_hash != record.args_hash
        ):
            await self._commit(
                run, self._error(record.call_id, record.tool, "approval record does not match the call", "failed")
            )
            return
        # Permission is checked again at execution time, against the configuration now in force.
        if not self.tools.may_approve(
            record.decided_by, spec.approval.approvers, record.requester, spec.approval.allow_self
        ):
            msg = f"{record.decided_by} is no longer an allowed approver for {record.tool}; the call did not run"
            await self._commit(run, self._error(record.call_id, record.tool, msg, "rejected"))
            return
        await self._execute(run, spec, record.call_id, record.args)

    # --- the loop ---------------------------------------------------------------------------

    async def _advance(self, run: Run) -> None:
        """Take steps while the thread is running and not paused."""
        await self._recover_interrupted(run)
        while run.state.status == "running" and not run.state.paused:
            state = run.state
            if state.consecutive_errors >= self.limits.error_limit:
                return await self._escalate(
                    run,
                    f"{state.consecutive_errors} failed steps in a row, the last: "
                    f"{state.last_outcome}. Tell me how to continue.",
                )
            if state.turn_steps >= self.limits.step_limit:
                return await self._escalate(
                    run,
                    f"I reached the limit of {self.limits.step_limit} steps for this request. Tell me how to continue.",
                )
            decision = await self._decide_next(run)
            if decision is not None:
                await self._step(run, decision)

    async def _decide_next(self, run: Run) -> Decision | None:
        model = self.models.command if run.state.turn_mode == "command" else self.models.language
        model = model or self.models.command
        if model.needs_history and run.history is None:
            run.history = await self.store.load_events(run.state.thread_id)
        request = ModelRequest(
            state=run.state,
            tools=self.tools,
            caller=run.state.last_actor or run.state.requester,
            history=run.history or [],
        )
        try:
            decision = await model.decide(request)
        except LLMBadResponse as exc:
            await self._commit(run, *self._usage(exc.usage), self._error(new_id(), "", str(exc), "invalid"))
            return None
        except LLMError as exc:
            await self._escalate(run, f"the model is unavailable: {exc}. Your request is saved; answer here to retry.")
            return None
        if decision.usage is not None:
            await self._commit(run, *self._usage(decision.usage))
        return decision

    async def _step(self, run: Run, decision: Decision) -> None:
        call_id = decision.call_id or new_id()
        args = decision.args if isinstance(decision.args, dict) else {"_raw": decision.args}
        call = ev.ToolCall(
            **self._meta(AGENT_ACTOR), call_id=call_id, tool=decision.tool, args=args, reason=decision.reason
        )
        try:
            spec = self.tools.get(decision.tool)
            self.tools.validate(decision.tool, decision.args)
            caller = run.state.last_actor or run.state.requester
            if not self.tools.may_call(caller, spec):
                raise InvalidToolCall(f"{caller} may not use {spec.name}; allowed: {self.tools.describe(spec.callers)}")
        except ToolError as exc:
            await self._commit(run, call, self._error(call_id, decision.tool, str(exc), "invalid"))
            return
        if spec.name == REPLY:
            await self._commit(run, call, ev.AgentReply(**self._meta(AGENT_ACTOR), text=args["message"]))
            run.outbox.append(self._out(run.state, ev.Reply, text=run.state.last_outcome))
        elif spec.name == ASK_HUMAN:
            await self._commit(
                run, call, ev.HumanQuestion(**self._meta(AGENT_ACTOR), call_id=call_id, question=args["question"])
            )
            run.outbox.append(self._out(run.state, ev.Question, question=args["question"]))
        elif spec.approval.applies(args):
            await self._request_approval(run, call, spec)
        else:
            await self._commit(run, call)
            await self._execute(run, spec, call_id, args)

    async def _request_approval(self, run: Run, call: ev.ToolCall, spec: ToolSpec) -> None:
        now = self.clock.now()
        record = ApprovalRecord(
            approval_id=new_approval_id(),
            thread_id=run.state.thread_id,
            call_id=call.call_id,
            tool=spec.name,
            args=call.args,
            args_hash=args_hash(spec.name, call.args),
            reason=call.reason,
            requester=run.state.last_actor or run.state.requester,
            approvers=spec.approval.approvers,
            allow_self=spec.approval.allow_self,
            channel=run.state.channel,
            conversation=run.state.conversation,
            created_at=now,
            expires_at=now + timedelta(seconds=spec.approval.expires_in),
        )
        await self.store.create_approval(record)
        requested = ev.ApprovalRequested(
            **self._meta(AGENT_ACTOR),
            **record.model_dump(
                include={
                    "approval_id",
                    "call_id",
                    "tool",
                    "args",
                    "args_hash",
                    "approvers",
                    "requester",
                    "allow_self",
                    "expires_at",
                }
            ),
        )
        await self._commit(run, call, requested)
        run.outbox.append(
            self._out(
                run.state,
                ev.ApprovalRequest,
                approval_id=record.approval_id,
                tool=spec.name,
                args=call.args,
                reason=call.reason,
                requester=record.requester,
                approvers=[self.tools.describe(record.approvers)],
                expires_at=record.expires_at,
            )
        )

    async def _execute(self, run: Run, spec: ToolSpec, call_id: str, args: dict[str, object]) -> None:
        await self._commit(run, ev.ToolStarted(**self._meta(AGENT_ACTOR), call_id=call_id, tool=spec.name))
        ctx = CallContext(thread_id=run.state.thread_id, call_id=call_id, requester=run.state.requester)
        try:
            output = await self.runner.run(spec, args, ctx)
        except ToolError as exc:
            await self._commit(run, self._error(call_id, spec.name, str(exc), "failed"))
            return
        result = ev.ToolResult(
            **self._meta(f"tool:{spec.name}"),
            call_id=call_id,
            tool=spec.name,
            output=output.text,
            duration_ms=output.duration_ms,
        )
        await self._commit(run, result)

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
        await self._commit(run, self._error(running.call_id, running.tool, msg, "interrupted"))
        await self._escalate(run, f"{msg}. Check its effect, then tell me whether to run it again.")

    async def _escalate(self, run: Run, reason: str) -> None:
        await self._commit(run, ev.Escalated(**self._meta(AGENT_ACTOR), reason=reason))
        run.outbox.append(self._out(run.state, ev.Question, question=reason))

    # --- plumbing ---------------------------------------------------------------------------

    async def _accept_message(self, run: Run, trigger: ev.MessageTrigger) -> None:
        state = run.state
        new: list[ev.Event] = []
        if state.seq == 0:
            new.append(
                ev.ThreadStarted(
                    **self._meta(trigger.sender),
                    agent=trigger.agent or self.name,
                    channel=trigger.channel,
                    conversation=trigger.conversation,
                    requester=trigger.sender,
                    reply_to=trigger.reply_to,
                )
            )
        if state.status == "awaiting_human":
            new.append(ev.HumanAnswer(**self._meta(trigger.sender), text=trigger.text, trigger_id=trigger.id))
        else:
            new.append(ev.UserMessage(**self._meta(trigger.sender), text=trigger.text, trigger_id=trigger.id))
        await self._commit(run, *new)
        if run.state.paused:
            await self._say(
                run, f"thread {state.thread_id} is paused; your message is saved and will be read on resume"
            )
        elif run.state.status == "awaiting_approval" and (pending := run.state.pending_approval):
            await self._say(
                run,
                f"still waiting for approval {pending.approval_id} ({pending.tool}); your message is "
                "saved and will be read after the decision",
            )

    async def _load(self, thread_id: str) -> Run:
        return Run(state=await self.store.load_state(thread_id))

    async def _commit(self, run: Run, *events: ev.Event) -> None:
        clean = [self.redactor.model(event) for event in events] if self.redactor else list(events)
        new_state = replay(clean, state=run.state)
        await self.store.append(run.state, clean, new_state)
        run.state = new_state
        if run.history is not None:
            run.history.extend(clean)

    async def _flush(self, run: Run) -> None:
        for outbound in run.outbox:
            await self.publisher.send(self.redactor.model(outbound))
        run.outbox.clear()

    async def _say(self, run: Run, text: str) -> None:
        run.outbox.append(self._out(run.state, ev.Notice, text=text))

    async def _refuse(self, trigger: ev.Trigger, text: str) -> None:
        notice = ev.Notice(
            id=new_id(),
            channel=trigger.channel,
            conversation=trigger.conversation,
            thread_id=trigger.thread_id,
            reply_to=trigger.reply_to,
            to=trigger.sender,
            text=text,
            level="warning",
        )
        await self.publisher.send(notice)

    def _out(self, state: ThreadState, kind: type[ev.OutboundT], **fields: Any) -> ev.OutboundT:
        return kind(
            id=new_id(),
            channel=state.channel,
            conversation=state.conversation,
            thread_id=state.thread_id,
            reply_to=state.reply_to,
            **fields,
        )

    def _meta(self, actor: str) -> Meta:
        return {"id": new_id(), "at": self.clock.now(), "actor": actor}

    def _error(self, call_id: str, tool: str, error: str, kind: ev.ToolErrorKind) -> ev.ToolErrorEvent:
        line = " ".join(error.split())[:500]
        return ev.ToolErrorEvent(**self._meta(AGENT_ACTOR), call_id=call_id, tool=tool, error=line, kind=kind)

    def _usage(self, usage: Usage | None) -> list[ev.Event]:
        if usage is None:
            return []
        return [ev.ModelCall(**self._meta(AGENT_ACTOR), **asdict(usage))]
