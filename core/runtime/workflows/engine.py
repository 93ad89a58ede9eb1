"""Deterministic workflows: plain Python that decides each step from the thread, without a model.

To the agent loop a workflow is a `Model`, so it is launched, paused and resumed exactly like an
agent thread: the same events and timeline, the same validation, the same approval gates (a gated
step waits for an approver and resumes on whichever process takes the decision). It keeps nothing
in memory; every decision is derived again from the thread's events since its launch message::

    class Release:
        def step(self, run: Progress) -> Choice:
            tests = run.outcome("run_tests")
            if tests is None:
                return run.call("run_tests", "run the tests first", service=run.args["service"])
            ...

A workflow calls an agent only where judgement is needed, by handing the thread to it
(`run.hand_to("incident", note)`); the agent then reads the thread with its own prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.domain import events as ev
from core.domain.errors import InvalidToolCall
from core.domain.reducer import ThreadState, reduce
from core.model.commands import parse_command, usage
from core.model.llm import Choice, ModelRequest
from core.tools.handoffs import handoff_tool
from core.tools.registry import ASK_HUMAN, REPLY, ToolRegistry, ToolSpec


@dataclass(frozen=True)
class Outcome:
    """How a step's call ended: its output, or its one-line error and the error's kind."""

    ok: bool
    text: str
    kind: str = "result"  # or a tool_error kind: failed, rejected, expired, invalid, interrupted


@dataclass(frozen=True)
class Progress:
    """What a workflow may read: its launch arguments and the outcome of each tool it called since."""

    workflow: str
    args: dict[str, Any]
    requester: str
    outcomes: dict[str, Outcome]

    def outcome(self, tool: str) -> Outcome | None:
        """The last outcome of `tool` in this run, or None when it was not called yet."""
        return self.outcomes.get(tool)

    def call(self, tool: str, reason: str, **args: Any) -> Choice:
        return Choice(tool=tool, args=args, reason=f"{self.workflow}: {reason}")

    def reply(self, message: str) -> Choice:
        return Choice(tool=REPLY, args={"message": message}, reason=f"{self.workflow}: done")

    def ask(self, question: str) -> Choice:
        return Choice(tool=ASK_HUMAN, args={"question": question}, reason=f"{self.workflow}: needs an answer")

    def hand_to(self, agent: str, note: str) -> Choice:
        """Let an agent decide what needs judgement; the note is the context it gets."""
        return Choice(tool=handoff_tool(agent), args={"note": note}, reason=f"{self.workflow}: needs judgement")


class Workflow(Protocol):
    def step(self, run: Progress) -> Choice: ...


def _launch_index(history: list[ev.Event]) -> int | None:
    """The position of the last user message that started a turn (not one recorded while waiting)."""
    state, found = ThreadState(), None
    for index, event in enumerate(history):
        if isinstance(event, ev.UserMessage) and state.status not in ("awaiting_approval", "awaiting_human"):
            found = index
        state = reduce(state, event)
    return found


def _outcomes(events: list[ev.Event]) -> dict[str, Outcome]:
    tools: dict[str, str] = {}
    outcomes: dict[str, Outcome] = {}
    for event in events:
        match event:
            case ev.ToolCall():
                tools[event.call_id] = event.tool
            case ev.ToolResult() if event.call_id in tools:
                outcomes[tools[event.call_id]] = Outcome(True, event.output)
            case ev.ToolErrorEvent() if event.call_id in tools:
                outcomes[tools[event.call_id]] = Outcome(False, event.error, event.kind)
    return outcomes


class WorkflowModel:
    """Runs a `Workflow` as the model of its profile: launch arguments come from its command."""

    def __init__(self, name: str, workflow: Workflow, launch: ToolSpec, groups: dict[str, list[str]]) -> None:
        self.name = name
        self.workflow = workflow
        self.launch = launch
        self._commands = ToolRegistry({name: launch}, groups)

    def arguments(self, text: str) -> dict[str, Any]:
        """`/release api 1.4.3` or, from a trigger that names the workflow, `api 1.4.3`; schema defaults filled."""
        line = text.strip()
        if not line.startswith("/"):
            line = f"/{self.name} {line}"
        name, args = parse_command(line, self._commands)
        if name != self.name:
            raise InvalidToolCall(f"{name} is not this workflow's command")
        self._commands.validate(name, args)
        properties = self.launch.parameters.get("properties", {})
        defaults = {key: spec["default"] for key, spec in properties.items() if "default" in spec}
        return defaults | args

    async def choose(self, request: ModelRequest) -> Choice:
        history = await request.events()
        start = _launch_index(history)
        if start is None:
            return Choice(tool=REPLY, args={"message": f"start {self.name} with {usage(self.launch)}"})
        launch = history[start]
        assert isinstance(launch, ev.UserMessage)
        try:
            args = self.arguments(launch.text)
        except InvalidToolCall as exc:
            return Choice(tool=REPLY, args={"message": f"{exc}; usage: {usage(self.launch)}"})
        run = Progress(self.name, args, request.state.requester, _outcomes(history[start + 1 :]))
        return self.workflow.step(run)
