"""The thread's state, derived from its events by a pure fold (factors 5 and 12).

Rules:
- `reduce` does no I/O and reads no clock; time comes from the events.
- The reducer owns the thread's invariants: `TRANSITIONS` says which events may follow each status and
  the status each leads to; `paused` overlays any status until `resumed`, and while paused only
  `WHILE_PAUSED` may arrive. Anything else raises `IllegalEvent` and changes nothing, so a caller
  that commits through `reduce` can never store it.
- Beyond the status, an event must fit what the thread holds: a tool starts, an approval is requested
  or a question asked for the thread's last call; a result is for the tool that is running, and no
  other step is taken (nor the turn ended) until it has one; a decision is for the pending approval.
- A user message starts a new turn, except while an approval or a question is pending: then it
  is only recorded, and the pending approval or question ends only with its own answer.
- The error streak counts consecutive tool errors; any successful result or human input resets it.
- Turn steps count tool calls since the last human message or answer (an approval does not start a
  new turn); the agent compares it with its step limit.
- An MCP server may ask a question while its tool runs (`server_asked`), answered by `server_answered`
  before the tool's result; the thread stays running, holding the question's id in `asking`.
- A hand-off changes the thread's agent and nothing else that was said: the turn goes on under the
  new agent, which reads the thread in its own words (`turn_mode` "model"); a message that follows
  in the same append (a slash command routed to its tool's agent) sets the mode as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, assert_never

from pydantic import BaseModel, ConfigDict

from core.domain import events as ev
from core.domain.errors import IllegalEvent

Status = Literal["new", "running", "awaiting_approval", "awaiting_human", "paused", "done", "failed"]
TurnMode = Literal["command", "model"]
EventClass = type[ev.Event]

RECENT_TRIGGERS = 32
OUTCOME_CAP = 4000

# What any thread that exists may take, whatever it is doing; none of them moves its status.
_ANY_TIME: Final = (ev.Paused, ev.Resumed, ev.DeliveryFailed)


def _stay(status: Status, *kinds: EventClass) -> dict[EventClass, Status]:
    return dict.fromkeys(kinds, status)


# status -> event -> the status it leads to; an event missing from its status's row is illegal there.
# "paused" is not a status here but an overlay (`WHILE_PAUSED`). Derived from what the runtime writes:
# `core.runtime.threads` (messages, decisions, pause, resume, expiry, undeliverable), `core.runtime.loop`
# (steps, hand-offs, escalation, interrupted tools) and `core.runtime.approvals` (requests).
TRANSITIONS: Final[Mapping[Status, Mapping[EventClass, Status]]] = {
    "new": {ev.ThreadStarted: "running"},
    "running": {
        # A message after a worker died mid-turn (or into a paused running thread) starts a new turn;
        # a tool error is also what an invalid model answer, with no call, becomes.
        **_stay("running", ev.UserMessage, ev.HandedOff, ev.ModelCall, ev.ToolCall, ev.ToolStarted),
        **_stay("running", ev.ToolResult, ev.ToolErrorEvent, *_ANY_TIME),
        # An MCP server's question during a running tool's call, and its answer: the tool is still running.
        **_stay("running", ev.ServerAsked, ev.ServerAnswered),
        # A standing grant given with an approval, or used by a call that then runs without a card.
        **_stay("running", ev.GrantGiven, ev.GrantUsed),
        ev.ToolPreviewed: "running",  # a gated call's preview, committed with its approval request
        ev.ApprovalRequested: "awaiting_approval",
        ev.HumanQuestion: "awaiting_human",
        ev.Escalated: "awaiting_human",  # error or step limit, an interrupted tool, no model, no budget
        ev.AgentReply: "done",
        ev.Failed: "failed",  # nothing writes it today; the event type is kept for the logs that have one
    },
    # Decided (approve, reject or expire) only by its own decision; a message meanwhile is only recorded.
    # A quorum's approvals before the last are recorded as they arrive (also while paused), and so is a snooze.
    "awaiting_approval": {
        **_stay("awaiting_approval", ev.UserMessage, ev.ApprovalVoted, ev.ApprovalSnoozed, *_ANY_TIME),
        # An approver's edit ends the request for the old arguments; the request for the new ones follows
        # in the same commit, so the thread is running only between the two.
        ev.ArgumentsEdited: "running",
        ev.ApprovalDecided: "running",
    },
    "awaiting_human": {**_stay("awaiting_human", ev.UserMessage, *_ANY_TIME), ev.HumanAnswer: "running"},
    # A new message starts a new turn, after the router's hand-off if it picks another agent.
    "done": {**_stay("done", ev.HandedOff, *_ANY_TIME), ev.UserMessage: "running"},
    "failed": {**_stay("failed", ev.HandedOff, *_ANY_TIME), ev.UserMessage: "running"},
}
# A paused thread takes no step: it records what people say and what channels report, until resumed;
# a decision that arrives meanwhile waits in its approval record (`Threads.resume` applies it).
WHILE_PAUSED: Final[frozenset[EventClass]] = frozenset(
    {ev.UserMessage, ev.HumanAnswer, ev.Resumed, ev.DeliveryFailed, ev.ApprovalVoted, ev.ApprovalSnoozed}
)


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
    pending_approval: ev.ApprovalTerms | None = None
    approval_votes: tuple[str, ...] = ()  # who approved the pending approval so far (a quorum not complete)
    pending_question: str | None = None
    question_call: str = ""  # the ask_human call the pending question asks for (empty for an escalation)
    question_options: tuple[str, ...] = ()
    question_asks: str = ""  # who may answer it, besides the requester and the turn's author
    running: RunningTool | None = None
    asking: str = ""  # the running tool's server asked a question (its ask id) that is not answered yet
    last_call: ev.ToolCall | None = None
    last_outcome: str = ""
    last_outcome_ok: bool = True
    last_error_kind: str = ""  # the last tool_error's kind: a rejection or an expiry is no failure to report
    consecutive_errors: int = 0
    steps: int = 0
    turn_steps: int = 0
    recent_triggers: tuple[str, ...] = ()
    undelivered: int = 0  # outbound messages a channel gave up on (delivery_failed events)
    updated_at: datetime | None = None

    @property
    def effective_status(self) -> Status:
        return "paused" if self.paused else self.status


def allowed(state: ThreadState) -> Mapping[EventClass, Status]:
    """The events that may follow `state` now, each with the status it leads to."""
    row = TRANSITIONS.get(state.status, {})
    if state.paused:
        return {kind: status for kind, status in row.items() if kind in WHILE_PAUSED}
    return {kind: status for kind, status in row.items() if kind is not ev.Resumed}


def type_name(kind: EventClass) -> str:
    """`tool_result` for `ToolResult`: the name the log stores."""
    name: str = kind.model_fields["type"].default
    return name


# Steps the thread takes; none may be taken while a tool it started has no result (a dead worker's tool
# is first re-run or recorded as interrupted, `core.runtime.loop`).
_STEPS: Final = (ev.ModelCall, ev.ToolCall, ev.ToolStarted, ev.ApprovalRequested, ev.HumanQuestion)
_ENDS: Final = (ev.AgentReply, ev.Escalated)


def _misfit(state: ThreadState, event: ev.Event) -> str | None:
    """Why `event` does not fit what the thread holds (its status aside), or None."""
    running, last, pending = state.running, state.last_call, state.pending_approval
    asked = (pending.approval_id, pending.call_id) if pending else None
    rerun = isinstance(event, ev.ToolStarted) and running is not None and running.call_id == event.call_id
    if running is not None and isinstance(event, _STEPS + _ENDS) and not rerun:
        return f"{running.tool} (call {running.call_id}) was started and has no result yet"
    match event:
        case ev.ToolStarted() | ev.ApprovalRequested() | ev.HumanQuestion() | ev.GrantUsed() if last is None or (
            last.call_id != event.call_id
        ):
            return f"call {event.call_id} is not the thread's last call ({last.call_id if last else 'none yet'})"
        case ev.ToolPreviewed() if last is None or last.call_id != event.call_id:
            return f"call {event.call_id} is not the thread's last call ({last.call_id if last else 'none yet'})"
        case ev.ServerAsked() | ev.ServerAnswered() if running is None or running.call_id != event.call_id:
            return f"call {event.call_id} is not running; a server asks only during its tool's call"
        case ev.ServerAnswered() if state.asking != event.ask_id:
            return f"question {event.ask_id} is not the one asked ({state.asking or 'none'})"
        case ev.ToolResult() if running is None or running.call_id != event.call_id:
            now = f"{running.tool} (call {running.call_id}) is running" if running else "no tool is running"
            return f"no tool was started for call {event.call_id}; {now}"
        case ev.ApprovalDecided() | ev.ApprovalVoted() | ev.ApprovalSnoozed() | ev.ArgumentsEdited() if asked != (
            event.approval_id,
            event.call_id,
        ):
            awaited = f"approval {asked[0]} (call {asked[1]})" if asked else "no approval"
            return f"approval {event.approval_id} (call {event.call_id}) is not awaited; the thread awaits {awaited}"
    return None


def _check(state: ThreadState, event: ev.Event) -> Status:
    """The status `event` leads to; raises IllegalEvent when the thread does not allow it now."""
    now = allowed(state)
    target = now.get(type(event))
    status = f"{state.status}, paused" if state.paused else state.status
    why = _misfit(state, event) if target is not None else f"a thread that is {status} does not take it"
    if target is None or why is not None:
        names = tuple(type_name(kind) for kind in now)
        raise IllegalEvent(
            f"thread {state.thread_id!r} ({status}, after event {state.seq}) cannot take {event.type} {event.id!r}: "
            f"{why}; allowed now: {', '.join(names) or 'nothing'}. The event was not applied",
            event_type=event.type,
            status=status,
            allowed=names,
        )
    return target


def _remember(state: ThreadState, trigger_id: str) -> tuple[str, ...]:
    if not trigger_id:
        return state.recent_triggers
    return (*state.recent_triggers, trigger_id)[-RECENT_TRIGGERS:]


_NO_QUESTION: Final = {"pending_question": None, "question_call": "", "question_options": (), "question_asks": ""}


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
    """What `event` changes besides the status (which `TRANSITIONS` decides)."""
    match event:
        case ev.ThreadStarted():
            return {
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
            return changes
        case ev.ToolCall():
            return {"last_call": event, "steps": state.steps + 1, "turn_steps": state.turn_steps + 1}
        case ev.ToolStarted():
            return {"running": RunningTool(call_id=event.call_id, tool=event.tool), "asking": ""}
        case ev.ToolResult():
            return {
                "running": None,
                "asking": "",
                "consecutive_errors": 0,
                "last_outcome": _outcome(event.output),
                "last_outcome_ok": True,
            }
        case ev.ToolErrorEvent():
            return {
                "running": None,
                "asking": "",
                "consecutive_errors": state.consecutive_errors + 1,
                "last_outcome": _outcome(event.error),
                "last_outcome_ok": False,
                "last_error_kind": event.kind,
            }
        case ev.ApprovalRequested():
            # The terms alone, not the event: the snapshot keeps the same shape as the request asked.
            terms = ev.ApprovalTerms(**event.model_dump(include=set(ev.ApprovalTerms.model_fields)))
            return {"pending_approval": terms, "approval_votes": ()}
        case ev.ApprovalVoted():
            votes = (*state.approval_votes, event.by) if event.by not in state.approval_votes else state.approval_votes
            return {"approval_votes": votes, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.ApprovalSnoozed():  # the card comes back later; the thread waits as it did
            return {"recent_triggers": _remember(state, event.trigger_id)}
        case ev.ArgumentsEdited():
            # The call runs with the edited arguments (also when an interrupted idempotent call is re-run).
            call = last.model_copy(update={"args": event.after}) if (last := state.last_call) else None
            return {
                "last_call": call,
                "pending_approval": None,
                "approval_votes": (),
                "recent_triggers": _remember(state, event.trigger_id),
            }
        case ev.ApprovalDecided():
            # Not the last actor: an approver consents to one call; the thread goes on for whoever asked,
            # with their permissions, and its next approval is still theirs to request.
            return {
                "pending_approval": None,
                "approval_votes": (),
                "recent_triggers": _remember(state, event.trigger_id),
            }
        case ev.GrantGiven() | ev.GrantUsed():  # facts for the audit trail; the grant itself is stored apart
            return {}
        case ev.ToolPreviewed():  # shown on the card and in the thread; the call waits for its approval
            return {}
        case ev.HumanQuestion():
            return {
                "pending_question": event.question,
                "question_call": event.call_id,
                "question_options": tuple(event.options),
                "question_asks": event.asks,
            }
        case ev.HumanAnswer():
            return {**_human_input(state, event), **_NO_QUESTION}
        case ev.AgentReply():
            return {"last_outcome": _outcome(event.text), "last_outcome_ok": True}
        case ev.Paused():
            return {"paused": True, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.Resumed():
            return {"paused": False, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.DeliveryFailed():
            return {"undelivered": state.undelivered + 1, "recent_triggers": _remember(state, event.trigger_id)}
        case ev.Escalated():
            return {**_NO_QUESTION, "pending_question": event.reason}
        case ev.Failed():
            return {"running": None, "asking": ""}
        case ev.HandedOff():
            return {"agent": event.to_agent, "turn_mode": "model"}
        case ev.ModelCall():
            return {}
        case ev.ServerAsked():
            return {"asking": event.ask_id}
        case ev.ServerAnswered():
            return {"asking": "", "recent_triggers": _remember(state, event.trigger_id)}
        case _:
            assert_never(event)  # a new event type needs its case here and its rows in TRANSITIONS


def reduce(state: ThreadState, event: ev.Event) -> ThreadState:
    """Return the state after `event`. Pure: the same events always give the same state.

    Raises:
        IllegalEvent: the thread does not allow `event` now (see `TRANSITIONS`); `state` is unchanged.
    """
    status = _check(state, event)
    changes = _changes(state, event)
    changes["status"] = status
    changes["seq"] = state.seq + 1
    changes["updated_at"] = event.at
    return state.model_copy(update=changes)


def replay(
    events: list[ev.Event], thread_id: str = "", state: ThreadState | None = None, *, stored: bool = False
) -> ThreadState:
    """Fold `events` onto `state` (a fresh thread by default); raises IllegalEvent at the first one not allowed.

    `stored=True` reads a log already written (`Store.rebuild_state`, `bot thread replay`, the API's replay):
    an event today's table refuses, written by an older version, is applied anyway with the status kept, so
    no stored thread becomes unreadable. New events always go through `reduce`, which refuses them.
    """
    current = state if state is not None else ThreadState(thread_id=thread_id)
    for event in events:
        current = _as_recorded(current, event) if stored else reduce(current, event)
    return current


def _as_recorded(state: ThreadState, event: ev.Event) -> ThreadState:
    try:
        return reduce(state, event)
    except IllegalEvent:
        changes = _changes(state, event) | {"status": state.status, "seq": state.seq + 1, "updated_at": event.at}
        return state.model_copy(update=changes)
