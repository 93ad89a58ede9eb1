"""Eval scenarios: read `evals/*.toml` and turn each compact thread into the events a real thread has.

The events are the same types the agent loop writes, so the model is shown the thread exactly as
`core.model.context` renders a live one, and its state is derived by the same reducer.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain import events as ev
from core.domain.errors import ConfigError, IllegalEvent
from core.domain.reducer import replay
from core.domain.toml_file import validated
from core.model.llm import ModelRequest
from core.runtime.roster import Roster
from core.tools.handoffs import handoff_tool
from core.tools.registry import ASK_HUMAN, REPLY

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KINDS = ("user", "call", "ask", "reply", "handed_from")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Step(_Model):
    """One thing that happened; exactly one of `user`, `call`, `ask`, `reply`, `handed_from`."""

    user: str | None = None
    sender: str = ""  # who wrote `user` or `answer`; default: the scenario's requester
    call: str | None = None
    args: dict[str, Any] = {}
    result: str | None = None
    error: str | None = None
    kind: ev.ToolErrorKind = "failed"
    approval: Literal["approved", "rejected"] | None = None
    by: str = "cli:operator"
    comment: str = ""
    ask: str | None = None
    answer: str | None = None
    reply: str | None = None
    handed_from: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"a thread step needs exactly one of {', '.join(KINDS)}; this one has {given or 'none'}")
        if self.call is not None and (self.result is None) == (self.error is None) and self.approval != "rejected":
            raise ValueError(f"call {self.call!r} needs a `result` or an `error`")
        return self


class Expected(_Model):
    tool: str
    args: dict[str, Any] = {}  # the call must have at least these arguments, with these values


class Scenario(_Model):
    id: str
    agent: str
    requester: str = "cli:operator"
    tags: list[str] = []
    thread: list[Step] = Field(min_length=1)
    expect: list[Expected] = Field(min_length=1)


def load_scenarios(path: Path, roster: Roster) -> list[Scenario]:
    """Scenarios from one file, ids prefixed with the file's name; each must name an agent with a model seam."""
    try:
        raw = tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"eval scenarios {path}: {exc}") from exc
    found = []
    for index, body in enumerate(raw.get("scenario", [])):
        body = {"agent": raw.get("agent", ""), **body}
        fields = {**body, "id": f"{path.stem}/{body.get('id', index)}"}
        scenario = validated(Scenario, fields, f"{path}: scenario {body.get('id', index)!r}")
        if scenario.agent not in roster or roster.get(scenario.agent).kind == "workflow":
            raise ConfigError(f"{path}: scenario {scenario.id!r} names {scenario.agent!r}, which is not an agent")
        try:
            status = replay(thread_events(scenario)).status
        except IllegalEvent as exc:
            raise ConfigError(f"{path}: scenario {scenario.id!r} describes a thread that cannot happen: {exc}") from exc
        if status != "running":
            raise ConfigError(f"{path}: scenario {scenario.id!r} ends with the thread {status}, so no agent is asked")
        found.append(scenario)
    return found


class _Thread:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.counter = itertools.count(1)
        self.events: list[ev.Event] = []

    def meta(self, actor: str = "agent") -> dict[str, Any]:
        n = next(self.counter)
        return {"id": f"e{n:04d}", "at": T0 + timedelta(seconds=n), "actor": actor}

    def add(self, *events: ev.Event) -> None:
        self.events.extend(events)

    def call(self, step: Step, tool: str, args: dict[str, Any]) -> str:
        call_id = f"toolu_eval{len(self.events):04d}"
        self.add(ev.ToolCall(**self.meta(), call_id=call_id, tool=tool, args=args))
        return call_id

    def outcome(self, step: Step, call_id: str, tool: str) -> None:
        if step.approval is not None:
            self.add(
                ev.ApprovalRequested(
                    **self.meta(),
                    approval_id=f"a{call_id[-4:]}",
                    call_id=call_id,
                    tool=tool,
                    args=step.args,
                    args_hash="-",
                    approvers=["group:oncall"],
                    requester=self.scenario.requester,
                    allow_self=True,
                    expires_at=T0 + timedelta(hours=1),
                ),
                ev.ApprovalDecided(
                    **self.meta(step.by),
                    approval_id=f"a{call_id[-4:]}",
                    call_id=call_id,
                    decision="approve" if step.approval == "approved" else "reject",
                    comment=step.comment,
                ),
            )
        if step.approval == "rejected":
            error = f"rejected by {step.by}: {step.comment or 'no reason given'}"
            self.add(ev.ToolErrorEvent(**self.meta(), call_id=call_id, tool=tool, error=error, kind="rejected"))
        elif step.error is not None:
            self.add(ev.ToolStarted(**self.meta(), call_id=call_id, tool=tool))
            self.add(ev.ToolErrorEvent(**self.meta(), call_id=call_id, tool=tool, error=step.error, kind=step.kind))
        else:
            self.add(ev.ToolStarted(**self.meta(), call_id=call_id, tool=tool))
            self.add(ev.ToolResult(**self.meta(f"tool:{tool}"), call_id=call_id, tool=tool, output=step.result or ""))

    def step(self, step: Step, trigger_ids: Iterator[int]) -> None:
        who = step.sender or self.scenario.requester
        if step.user is not None:
            self.add(ev.UserMessage(**self.meta(who), text=step.user, trigger_id=f"t{next(trigger_ids)}"))
        elif step.call is not None:
            self.outcome(step, self.call(step, step.call, step.args), step.call)
        elif step.ask is not None:
            call_id = self.call(step, ASK_HUMAN, {"question": step.ask})
            self.add(ev.HumanQuestion(**self.meta(), call_id=call_id, question=step.ask))
            if step.answer is not None:
                self.add(ev.HumanAnswer(**self.meta(who), text=step.answer, trigger_id=f"t{next(trigger_ids)}"))
        elif step.reply is not None:
            self.call(step, REPLY, {"message": step.reply})
            self.add(ev.AgentReply(**self.meta(), text=step.reply))
        elif step.handed_from is not None:
            call_id = self.call(step, handoff_tool(self.scenario.agent), {"note": step.note})
            self.add(
                ev.HandedOff(
                    **self.meta(),
                    from_agent=step.handed_from,
                    to_agent=self.scenario.agent,
                    note=step.note,
                    call_id=call_id,
                )
            )


def thread_events(scenario: Scenario) -> list[ev.Event]:
    """The scenario's thread as events, starting with the agent that held it first."""
    first = next((s.handed_from for s in scenario.thread if s.handed_from), None) or scenario.agent
    thread = _Thread(scenario)
    thread.add(
        ev.ThreadStarted(
            **thread.meta(scenario.requester),
            agent=first,
            channel="eval",
            conversation=scenario.id,
            requester=scenario.requester,
        )
    )
    trigger_ids = itertools.count(1)
    for step in scenario.thread:
        thread.step(step, trigger_ids)
    return thread.events


def request_for(scenario: Scenario, roster: Roster) -> ModelRequest:
    """What the loop would hand the agent's model at this point of the thread."""
    events = thread_events(scenario)
    state = replay(events, thread_id=f"eval-{scenario.id}")
    caller = state.last_actor or state.requester
    return ModelRequest(state=state, tools=roster.get(scenario.agent).tools, caller=caller, history=events)
