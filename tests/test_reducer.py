"""The reducer is a pure fold: the same events always give the same state, at every prefix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import events as ev
from core.domain.reducer import ThreadState, reduce, replay

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ids = st.text("abcdef0123456789", min_size=4, max_size=8)
actors = st.sampled_from(["cli:operator", "slack:T1:U1", "agent", "tool:deploy"])
texts = st.text(max_size=40)
args = st.dictionaries(st.sampled_from(["service", "version", "environment"]), st.text(max_size=8), max_size=3)


def _event(kind: str, n: int, draw: st.DrawFn) -> ev.Event:  # noqa: C901 - one flat case per event type
    meta = {"id": f"e{n:06d}", "at": T0 + timedelta(seconds=n), "actor": draw(actors)}
    call_id = draw(ids)
    tool = draw(st.sampled_from(["deploy", "status", "reply", "ask_human"]))
    match kind:
        case "thread_started":
            return ev.ThreadStarted(
                **meta, agent="deploybot", channel="cli", conversation="c", requester="cli:operator"
            )
        case "user_message":
            return ev.UserMessage(**meta, text=draw(texts), trigger_id=draw(ids))
        case "model_call":
            return ev.ModelCall(
                **meta, prompt_name="p", prompt_hash="h", model="m", input_tokens=draw(st.integers(0, 99))
            )
        case "tool_call":
            return ev.ToolCall(**meta, call_id=call_id, tool=tool, args=draw(args))
        case "tool_started":
            return ev.ToolStarted(**meta, call_id=call_id, tool=tool)
        case "tool_result":
            return ev.ToolResult(**meta, call_id=call_id, tool=tool, output=draw(texts))
        case "tool_error":
            kind_ = draw(st.sampled_from(["invalid", "failed", "rejected", "interrupted", "expired"]))
            return ev.ToolErrorEvent(**meta, call_id=call_id, tool=tool, error=draw(texts), kind=kind_)
        case "approval_requested":
            return ev.ApprovalRequested(
                **meta, approval_id=draw(ids), call_id=call_id, tool=tool, args=draw(args), args_hash="x",
                approvers=["group:oncall"], requester="cli:operator", allow_self=draw(st.booleans()),
                expires_at=T0 + timedelta(hours=1),
            )  # fmt: skip
        case "approval_decided":
            decision = draw(st.sampled_from(["approve", "reject"]))
            return ev.ApprovalDecided(
                **meta, approval_id=draw(ids), call_id=call_id, decision=decision, trigger_id=draw(ids)
            )
        case "human_question":
            return ev.HumanQuestion(**meta, call_id=call_id, question=draw(texts))
        case "human_answer":
            return ev.HumanAnswer(**meta, text=draw(texts), trigger_id=draw(ids))
        case "agent_reply":
            return ev.AgentReply(**meta, text=draw(texts))
        case "paused":
            return ev.Paused(**meta)
        case "resumed":
            return ev.Resumed(**meta)
        case "escalated":
            return ev.Escalated(**meta, reason=draw(texts))
        case "handed_off":
            agents = st.sampled_from(["deploybot", "incident", "status", "release"])
            return ev.HandedOff(
                **meta, from_agent=draw(agents), to_agent=draw(agents), note=draw(texts), call_id=call_id
            )
    return ev.Failed(**meta, error=draw(texts))


KINDS = [
    "user_message", "model_call", "tool_call", "tool_started", "tool_result", "tool_error", "approval_requested",
    "approval_decided", "human_question", "human_answer", "agent_reply", "paused", "resumed", "escalated", "failed",
    "handed_off",
]  # fmt: skip


@st.composite
def threads(draw: st.DrawFn) -> list[ev.Event]:
    kinds = ["thread_started", *draw(st.lists(st.sampled_from(KINDS), max_size=40))]
    return [_event(kind, n, draw) for n, kind in enumerate(kinds)]


@settings(max_examples=150, deadline=None)
@given(threads())
def test_replaying_the_same_events_gives_the_same_state(events: list[ev.Event]) -> None:
    assert replay(events, "t1") == replay(list(events), "t1")


@settings(max_examples=150, deadline=None)
@given(threads(), st.data())
def test_a_prefix_gives_the_state_at_that_point(events: list[ev.Event], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(events)))
    stepwise = ThreadState(thread_id="t1")
    states = [stepwise]
    for event in events:
        stepwise = reduce(stepwise, event)
        states.append(stepwise)
    assert replay(events[:cut], "t1") == states[cut]
    # Folding the rest onto a stored snapshot gives the same state as a full replay.
    assert replay(events[cut:], state=states[cut]) == replay(events, "t1")


@settings(max_examples=150, deadline=None)
@given(threads())
def test_snapshot_round_trips_through_json(events: list[ev.Event]) -> None:
    """The store keeps the state as compact JSON beside the log; it must come back identical."""
    state = replay(events, "t1")
    assert ThreadState.model_validate_json(state.model_dump_json(exclude_defaults=True)) == state


@settings(max_examples=100, deadline=None)
@given(threads())
def test_events_round_trip_through_json(events: list[ev.Event]) -> None:
    assert [ev.parse_event(e.model_dump_json()) for e in events] == events


def _meta(n: int, actor: str = "cli:operator") -> dict:
    return {"id": f"e{n}", "at": T0 + timedelta(seconds=n), "actor": actor}


def test_status_follows_the_approval_lifecycle() -> None:
    call = ev.ToolCall(**_meta(2, "agent"), call_id="c1", tool="deploy", args={"service": "api"})
    requested = ev.ApprovalRequested(
        **_meta(3, "agent"), approval_id="a1", call_id="c1", tool="deploy", args={"service": "api"}, args_hash="h",
        approvers=["group:oncall"], requester="cli:operator", allow_self=True, expires_at=T0,
    )  # fmt: skip
    events: list[ev.Event] = [
        ev.ThreadStarted(**_meta(0), agent="a", channel="cli", conversation="c", requester="cli:operator"),
        ev.UserMessage(**_meta(1), text="/deploy api", trigger_id="t1"),
        call,
        requested,
    ]
    waiting = replay(events, "t1")
    assert waiting.status == "awaiting_approval"
    assert waiting.pending_approval is not None and waiting.pending_approval.approval_id == "a1"
    assert waiting.turn_mode == "command" and waiting.steps == 1

    # A message while an approval is pending is recorded but does not unblock the thread.
    still = reduce(waiting, ev.UserMessage(**_meta(4), text="hurry", trigger_id="t2"))
    assert still.status == "awaiting_approval" and still.recent_triggers == ("t1", "t2")

    decided = reduce(still, ev.ApprovalDecided(**_meta(5), approval_id="a1", call_id="c1", decision="approve"))
    assert decided.status == "running" and decided.pending_approval is None
    assert decided.turn_steps == 1, "an approval continues the same turn"


def test_errors_count_in_a_row_and_reset_on_success() -> None:
    state = replay([ev.ThreadStarted(**_meta(0), agent="a", channel="cli", conversation="c", requester="u")], "t")
    for n in range(1, 4):
        state = reduce(state, ev.ToolErrorEvent(**_meta(n), call_id=f"c{n}", tool="x", error="boom"))
    assert state.consecutive_errors == 3 and not state.last_outcome_ok
    state = reduce(state, ev.ToolResult(**_meta(4), call_id="c4", tool="x", output="fine"))
    assert state.consecutive_errors == 0 and state.last_outcome == "fine"


def test_pause_overlays_any_status_until_resumed() -> None:
    events: list[ev.Event] = [
        ev.ThreadStarted(**_meta(0), agent="a", channel="cli", conversation="c", requester="u"),
        ev.HumanQuestion(**_meta(1), call_id="q", question="which env?"),
        ev.Paused(**_meta(2)),
    ]
    paused = replay(events, "t")
    assert paused.effective_status == "paused" and paused.status == "awaiting_human"
    resumed = reduce(paused, ev.Resumed(**_meta(3)))
    assert resumed.effective_status == "awaiting_human"


def test_a_hand_off_moves_the_thread_to_the_next_agent_and_keeps_the_turn() -> None:
    events: list[ev.Event] = [
        ev.ThreadStarted(**_meta(0), agent="router", channel="cli", conversation="c", requester="cli:operator"),
        ev.UserMessage(**_meta(1), text="api is down", trigger_id="t1"),
        ev.ToolCall(**_meta(2, "agent"), call_id="c1", tool="hand_to_incident", args={"note": "api down"}),
        ev.HandedOff(**_meta(3, "agent"), from_agent="router", to_agent="incident", note="api down", call_id="c1"),
    ]
    before, after = replay(events[:3], "t"), replay(events, "t")
    assert (after.agent, after.turn_mode, after.status) == ("incident", "model", "running")
    assert after.turn_steps == before.turn_steps == 1, "the hand-off is a step of the same turn"
    assert after.model_copy(update={"agent": "router", "seq": 3, "updated_at": before.updated_at}) == before
    # A slash command routed to its tool's agent: the message that follows sets the mode as usual.
    routed = reduce(after, ev.HandedOff(**_meta(4, "cli:operator"), from_agent="incident", to_agent="deploybot"))
    routed = reduce(routed, ev.UserMessage(**_meta(5), text="/deploy api 1.4.3 staging", trigger_id="t2"))
    assert (routed.agent, routed.turn_mode, routed.turn_steps) == ("deploybot", "command", 0)
