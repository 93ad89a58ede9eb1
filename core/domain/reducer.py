"""The thread's state, derived from its events by a pure fold (factors 5 and 12).

Rules:
- `reduce` does no I/O and reads no clock; time comes from the events.
- Status follows the last event that moves it; `paused` overlays any status until `resumed`.
- A user message starts a new turn, except while an approval or a question is pending: then it
  is only recorded, and the pending approval or question ends only with its own answer.
- The error streak counts consecutive tool errors; any successful result or human input resets it.
- Turn steps count tool calls since the last human message or answer (an approval does not start a
  new turn); the agent compares it with its step limit.
- A hand-off changes the thread's agent and nothing else that was said: the turn goes on under the
  new agent, which reads the thread in its own words (`turn_mode` "model"); a message that follows
  in the same append (a slash command routed to its tool's agent) sets the mode as usual.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.domain import events as ev

Status = Literal["new", "running", "awaiting_approval", "awaiting_human", "paused", "done", "failed"]
TurnMode = Literal["command", "model"]

RECENT_TRIGGERS = 32
OUTCOME_CAP = 4000


class PendingApproval(BaseModel):
    model_config = ConfigDict(frozen=True)
    approval_id: str
    call_id: str
    tool: str
    args: dict[str, Any]
    args_hash: str
    approvers: list[str]
    requester: str
    allow_self: bool
    expires_at: datetime


class RunningTool(BaseModel):
    model_config = ConfigDict(frozen=True)
    call_id: str
    tool: str


class ThreadState(BaseModel):
    model_config = ConfigDict(frozen=True)

    thread_id: str = ""
    seq: int = 0
    status: Status = "new"
    paused: bool = False
    agent: str = ""
    channel: str = ""
    conversation: str = ""
    requester: str = ""
    reply_to: dict[str, str] = {}
    turn_mode: TurnMode = "model"
    last_user_text: str = ""
    last_actor: str = ""
    pending_approval: PendingApproval | None = None
    pending_question: str | None = None
    running: RunningTool | None = None
    last_call: ev.ToolCall | None = None
    last_outcome: str = ""
    last_outcome_ok: bool = True
    consecutive_errors: int = 0
    steps: int = 0
    turn_steps: int = 0
    recent_triggers: tuple[str, ...] = ()
    undelivered: int = 0  # outbound messages a channel gave up on (delivery_failed events)
    updated_at: datetime | None = None

    @property
    def effective_status(self) -> Status:
        return "paused" if self.paused else self.status


def _remember(state: ThreadState, trigger_id: str) -> tuple[str, ...]:
    if not trigger_id:
        return state.recent_triggers
    return (*state.recent_triggers, trigger_id)[-RECENT_TRIGGERS:]


def _human_input(state: ThreadState, event: ev.UserMessage | ev.HumanAnswer) -> dict[str, Any]:
    return {
        "last_user_text": event.text,
        "last_actor": event.actor,
        "consecutive_errors": 0,
        "turn_steps": 0,
        "recent_triggers": _remember(state, event.trigger_id),
    }


def _outcome(text: str) -> str:
    return text if len(text) <= OUTCOME_CAP else text[:OUTCOME_CAP] + f"\n… ({len(text) - OUTCOME_CAP} more characters)"


def _changes(state: ThreadState, event: ev.Event) -> dict[str, Any]:  # noqa: C901 - one flat case per event type
    match event:
        case ev.ThreadStarted():
            return {
                "status": "running",
                "agent": event.agent,
                "channel": event.channel,
                "conversation": event.conversation,
                "requester": event.requester,
                "reply_to": event.reply_to,
            }
        case ev.UserMessage() if state.status in ("awaiting_approval", "awaiting_human"):
            # Recorded for the model to read later; it does not start a new turn.
            return {"recent_triggers": _remember(state, event.trigger_id)}
        case ev.UserMessage():
            changes = _human_input(state, event)
            changes["turn_mode"] = "command" if event.text.lstrip().startswith("/") else "model"
            changes["status"] = "running"
            return changes
        case ev.ToolCall():
            return {
                "status": "running",
                "last_call": event,
                "steps": state.steps + 1,
                "turn_steps": state.turn_steps + 1,
            }
        case ev.ToolStarted():
            return {"running": RunningTool(call_id=event.call_id, tool=event.tool)}
        case ev.ToolResult():
            return {
                "running": None,
                "consecutive_errors": 0,
                "last_outcome": _outcome(event.output),
                "last_outcome_ok": True,
            }
        case ev.ToolErrorEvent():
            return {
                "running": None,
                "consecutive_errors": state.consecutive_errors + 1,
                "last_outcome": _outcome(event.error),
                "last_outcome_ok": False,
            }
        case ev.ApprovalRequested():
            pending = PendingApproval(**event.model_dump(include=set(PendingApproval.model_fields)))
            return {"status": "awaiting_approval", "pending_approval": pending}
        case ev.ApprovalDecided():
            # Not the last actor: an approver consents to one call; the thread goes on for whoever asked,
            # with their permissions, and its next approval is still theirs to request.
            return {
                "status": "running",
                "pending_approval": None,
                "recent_triggers": _remember(state, event.trigger_id),
            }
        case ev.HumanQuestion():
            return {"status": "awaiting_human", "pending_question": event.question}
        case ev.HumanAnswer():
            return {**_human_input(state, event), "status": "running", "pending_question": None}
        case ev.AgentReply():
            return {"status": "done", "last_outcome": _outcome(event.text), "last_outcome_ok": True}
        case ev.Paused():
            return {"paused": True, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.Resumed():
            return {"paused": False, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.DeliveryFailed():
            return {"undelivered": state.undelivered + 1, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.Escalated():
            return {"status": "awaiting_human", "pending_question": event.reason}
        case ev.Failed():
            return {"status": "failed", "running": None}
        case ev.HandedOff():
            return {"agent": event.to_agent, "turn_mode": "model"}
        case ev.ModelCall():
            return {}
    raise TypeError(f"unknown event type {type(event).__name__}")  # pragma: no cover - the union is closed


def reduce(state: ThreadState, event: ev.Event) -> ThreadState:
    """Return the state after `event`. Pure: the same events always give the same state."""
    changes = _changes(state, event)
    changes["seq"] = state.seq + 1
    changes["updated_at"] = event.at
    return state.model_copy(update=changes)


def replay(events: list[ev.Event], thread_id: str = "", state: ThreadState | None = None) -> ThreadState:
    """Fold `events` onto `state` (a fresh thread by default)."""
    current = state if state is not None else ThreadState(thread_id=thread_id)
    for event in events:
        current = reduce(current, event)
    return current
