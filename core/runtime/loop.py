"""The control flow (factor 8): what happens after each tool call.

- Immediate tools run and the loop continues.
- A gated tool records an approval request and the thread waits until a decision arrives;
  on approval the *stored* call runs after the approver's permission is checked again
  (`core.runtime.approvals`).
- `ask_human` waits for an answer; `reply` ends the turn.
- A failed or invalid call becomes a one-line error event; `error_limit` in a row, or the
  agent's step limit in one turn, escalate to a human instead of spinning.
- Each step is taken as the agent that holds the thread then (`core.runtime.roster`): its model and
  prompt, its tools, its step limit. `hand_to_<agent>` moves the thread, keeping its id and
  history; a workflow is an agent whose model is plain Python (`core.runtime.workflows`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from core.domain import events as ev
from core.domain.errors import InvalidToolCall, LLMBadResponse, LLMError, ToolError
from core.domain.ids import new_id
from core.domain.reducer import ThreadState
from core.model.commands import as_command
from core.model.llm import Choice, Model, ModelRequest
from core.obs import failpoints, logs, tracing
from core.redis.store import DecisionWrite, Store
from core.runtime.approvals import Approvals
from core.runtime.budget import BudgetSpent
from core.runtime.grants import Grants
from core.runtime.holds import Holds
from core.runtime.roster import Profile, Roster
from core.runtime.run import Run
from core.tools.executors import CallContext, ToolOutput, ToolRunner
from core.tools.mcp.forms import Asker
from core.tools.registry import ToolRegistry, ToolSpec


def checked_call(tools: ToolRegistry, caller: str, choice: Choice) -> ToolSpec:
    """The tool is one of the agent's, the arguments fit its schema, and the caller may use it."""
    spec = tools.get(choice.tool)
    tools.validate(choice.tool, choice.args)
    if not tools.may_call(caller, spec):
        raise InvalidToolCall(f"{caller} may not use {spec.name}; allowed: {tools.describe(spec.callers)}")
    return spec


class Asking(Protocol):
    """Gives each call whom to ask what its MCP server asks (`core.runtime.asking.ServerQuestions`)."""

    def asker(self, run: Run, call_id: str) -> Asker: ...


log = logging.getLogger(__name__)
History = Callable[[], Awaitable[list[ev.Event]]]


def started_by_message(events: list[ev.Event], text: str) -> bool:
    """The turn's `text` came in a user message (not an answer to a question the model asked) and no agent
    has handed the thread on since: a new agent reads the turn in its own words."""
    for event in reversed(events):
        if isinstance(event, ev.HandedOff):
            return False
        if isinstance(event, ev.UserMessage | ev.HumanAnswer) and event.text == text:
            return isinstance(event, ev.UserMessage)
    return False


def log_step(step: int, tool: str, outcome: str, started: float) -> None:
    """One INFO line per step: the tool, how it ended, and how long the step took (model and tool)."""
    if not log.isEnabledFor(logging.INFO):
        return
    ms = round((time.perf_counter() - started) * 1000, 1)
    extra = {"step": step, "tool": tool, "outcome": outcome, "duration_ms": ms}
    log.info("step done: tool=%s outcome=%s %.0f ms", tool or "-", outcome, ms, extra=extra)


class Loop:
    """Takes a thread's steps under the lease its caller (`core.runtime.threads.Threads`) holds."""

    def __init__(
        self,
        *,
        store: Store,
        tools: ToolRegistry,
        runner: ToolRunner,
        roster: Roster,
        command: Model,
        approvals: Approvals,
        error_limit: int,
        questions: Asking | None = None,
        holds: Holds | None = None,
        grants: Grants | None = None,
    ) -> None:
        self.store = store
        self.tools = tools  # every tool: an interrupted call is recovered whoever holds the thread
        self.runner = runner
        self.roster = roster
        self.command = command
        self.approvals = approvals
        self.error_limit = error_limit
        self.questions = questions  # an MCP server's questions during a call go to the thread's person
        self.holds = holds  # change freezes, allowed windows and target locks hold gated calls back
        self.grants = grants  # standing grants let a matching gated call run without a card

    async def advance(self, run: Run) -> None:
        """Take steps while the thread is running and not paused, each as the agent that holds it then."""
        await self._advance(run)
        if self.holds is not None:  # the target locks of calls the thread no longer holds are released
            await self.holds.release(run)

    async def _advance(self, run: Run) -> None:
        await self._recover_interrupted(run)
        logs.bind(agent=run.state.agent)  # known only now for a thread this trigger started
        while run.state.status == "running" and not run.state.paused:
            state, profile = run.state, self.roster.get(run.state.agent)
            if state.consecutive_errors >= self.error_limit:
                reason = f"{state.consecutive_errors} failed steps in a row, the last: {state.last_outcome}."
                return await self.escalate(run, f"{reason} Tell me how to continue.")
            if state.turn_steps >= profile.step_limit:
                reason = f"I reached the limit of {profile.step_limit} steps for this request."
                return await self.escalate(run, f"{reason} Tell me how to continue.")
            started, step = time.perf_counter(), state.steps + 1
            choice = await self._choose_next(run, profile)
            if choice is None:  # the model failed: its error is recorded, or the thread escalated
                log_step(step, "", "escalated" if run.state.status != "running" else "invalid", started)
                continue
            log_step(step, choice.tool, await self._step(run, choice, profile), started)

    async def _model(self, state: ThreadState, profile: Profile, load: History) -> Model:
        """A workflow decides every step; an agent reads free text with its model, when it has one, and
        a command (`help`, `/status api staging`, or `status api staging` without the slash) without it."""
        if profile.model is None or profile.kind == "workflow":
            return profile.model or self.command
        if state.turn_mode == "command":
            return self.command
        if state.last_user_text.lstrip().startswith("/") or as_command(state.last_user_text, profile.tools) is None:
            return profile.model
        # Written like a command (a slash one is "command" unless an agent handed the turn on): it is one
        # when a message started the turn, not when it answers the model's question.
        return self.command if started_by_message(await load(), state.last_user_text) else profile.model

    async def _choose_next(self, run: Run, profile: Profile) -> Choice | None:
        async def load() -> list[ev.Event]:  # once per trigger: the run keeps it current as it commits
            if run.history is None:
                run.history = await self.store.load_events(run.state.thread_id)
            return run.history

        model = await self._model(run.state, profile, load)

        caller = run.state.last_actor or run.state.requester
        request = ModelRequest(
            state=run.state, tools=profile.tools, caller=caller, history=run.history, load_history=load
        )
        try:
            choice = await model.choose(request)
        except LLMBadResponse as exc:
            await run.commit(*run.usage(exc.usage), run.error(new_id(), "", str(exc), "invalid"))
            return None
        except BudgetSpent as exc:
            await self.escalate(run, f"{exc}. Your request is saved; answer here then to go on.", level="warning")
            return None
        except LLMError as exc:  # the detail is for operators: the log has it under a reference the user sees
            reference = new_id()[:8]
            log.warning("thread %s: the model call failed (reference %s): %s", run.state.thread_id, reference, exc)
            await self.escalate(
                run,
                f"I could not reach the language model (reference {reference}), so I stopped here. Your "
                "request is saved: answer here to retry, or use a /command, which needs no model.",
                level="error",
            )
            return None
        if choice.usage is not None:
            await run.commit(*run.usage(choice.usage))
        return choice

    async def _step(self, run: Run, choice: Choice, profile: Profile) -> str:
        """Take the decided step; returns its outcome, for the step's log line."""
        call_id = choice.call_id or new_id()
        args = choice.args if isinstance(choice.args, dict) else {"_raw": choice.args}
        call = ev.ToolCall(**run.meta(), call_id=call_id, tool=choice.tool, args=args, reason=choice.reason)
        try:
            spec = self._checked(run, choice, profile.tools)
        except ToolError as exc:
            await run.commit(call, run.error(call_id, choice.tool, str(exc), "invalid"))
            return "invalid"
        match profile.effect(spec, args):
            case "reply":
                run.send(ev.Reply, text=args["message"])
                await run.commit(call, ev.AgentReply(**run.meta(), text=args["message"]))
                return "replied"
            case "ask_human":
                options = list(args.get("options") or [])
                run.send(ev.Question, question=args["question"], options=options, call_id=call_id)
                asked = ev.HumanQuestion(**run.meta(), call_id=call_id, question=args["question"], options=options)
                await run.commit(call, asked)
                return "asked"
            case "hand_off":
                to = profile.handoffs[spec.name]
                handed = ev.HandedOff(
                    **run.meta(), from_agent=profile.name, to_agent=to, note=args["note"], call_id=call_id
                )
                await run.commit(call, handed)
                logs.bind(agent=to)
                return "handed_off"
            case "approval":
                if self.holds is not None:  # a freeze, a closed window or another thread's lock refuses it
                    admitted = await self.holds.admit(run, call, spec)
                    if admitted is None:
                        return "refused"
                    call = admitted
                if self.grants is not None and (used := await self.grants.match(run, call, spec)) is not None:
                    return await self.execute(run, spec, call_id, args, call, used)
                await self.approvals.open(run, call, spec)
                return "approval_requested"
            case "run":
                return await self.execute(run, spec, call_id, args, call)
        raise AssertionError(f"unknown effect of {spec.name}")  # pragma: no cover - the effects are closed

    def _checked(self, run: Run, choice: Choice, tools: ToolRegistry) -> ToolSpec:
        return checked_call(tools, run.state.last_actor or run.state.requester, choice)

    async def execute(
        self,
        run: Run,
        spec: ToolSpec,
        call_id: str,
        args: dict[str, object],
        *before: ev.Event,
        decision: DecisionWrite | None = None,
    ) -> str:
        """Run a tool; `before` (the call, or the approval and its `decision`) is stored with ToolStarted
        in one round trip. Returns the outcome: "ok", "failed" or "refused" (a freeze or a lock holds it)."""
        if self.holds is not None and (refusal := await self.holds.before_run(run, spec, call_id, args)):
            await run.commit(*before, run.error(call_id, spec.name, refusal, "rejected"), decision=decision)
            return "refused"
        await run.commit(*before, ev.ToolStarted(**run.meta(), call_id=call_id, tool=spec.name), decision=decision)
        if decision is not None:
            await failpoints.hit("after-decision")
        run.progress(f"running {spec.name}…")
        asker = self.questions.asker(run, call_id) if self.questions is not None else None
        ctx = CallContext(thread_id=run.state.thread_id, call_id=call_id, requester=run.state.requester, asker=asker)
        try:
            output = await self._run_tool(spec, args, ctx)
        except ToolError as exc:
            await failpoints.hit("after-tool")
            await run.commit_durably(run.error(call_id, spec.name, str(exc), "failed"))
            return "failed"
        await failpoints.hit("after-tool")
        await run.commit_durably(
            ev.ToolResult(
                **run.meta(f"tool:{spec.name}"),
                call_id=call_id,
                tool=spec.name,
                output=output.text,
                duration_ms=output.duration_ms,
            )
        )
        return "ok"

    async def _run_tool(self, spec: ToolSpec, args: dict[str, object], ctx: CallContext) -> ToolOutput:
        """The executor, in a GenAI `execute_tool` span (no arguments or output on it: they can hold secrets)."""
        attributes: dict[str, tracing.Attribute] | None = None
        if tracing.on():
            attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": spec.name,
                "gen_ai.tool.call.id": ctx.call_id,
                "gen_ai.tool.type": "function",
            }
        with tracing.span(f"execute_tool {spec.name}", attributes) as span:
            try:
                output = await self.runner.run(spec, args, ctx)
            except ToolError:
                span.set_attribute("bot.outcome", "failed")
                raise
            span.set_attribute("bot.outcome", "ok")
        return output

    async def _recover_interrupted(self, run: Run) -> None:
        """A tool started by a worker that died: never re-run it blindly unless it is idempotent."""
        running = run.state.running
        if running is None or run.state.paused:
            return
        spec = self.tools.get(running.tool) if running.tool in self.tools else None
        last = run.state.last_call
        if spec is not None and spec.idempotent and last is not None and last.call_id == running.call_id:
            started = time.perf_counter()
            log_step(run.state.steps, spec.name, await self.execute(run, spec, running.call_id, last.args), started)
            return
        msg = f"{running.tool} was interrupted (the worker stopped) and may or may not have run"
        await run.commit(run.error(running.call_id, running.tool, msg, "interrupted"))
        await self.escalate(run, f"{msg}. Check its effect, then tell me whether to run it again.")

    async def escalate(self, run: Run, reason: str, level: ev.NoticeLevel | None = None) -> None:
        """The thread stops and waits for a person: asked as a question, or told as a notice at `level`
        (a failure of ours is not a question the person could answer)."""
        if level is None:
            run.send(ev.Question, question=reason)
        else:
            run.send(ev.Notice, text=reason, level=level)
        await run.commit(ev.Escalated(**run.meta(), reason=reason))
