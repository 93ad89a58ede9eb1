"""The reducer is a pure fold: the same events always give the same state, at every prefix.

What it refuses (the transition table) is tested in tests/test_reducer_transitions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import events as ev
from core.domain.reducer import ThreadState, reduce, replay
from tests.test_reducer_transitions import threads  # threads the runtime could write: each event allowed

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@PROPERTY
@given(threads())
def test_replaying_the_same_events_gives_the_same_state(events: list[ev.Event]) -> None:
    assert replay(events, "t1") == replay(list(events), "t1")


@PROPERTY
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


@PROPERTY
@given(threads())
def test_snapshot_round_trips_through_json(events: list[ev.Event]) -> None:
    """The store keeps the state as compact JSON beside the log; it must come back identical."""
    state = replay(events, "t1")
    assert ThreadState.model_validate_json(state.model_dump_json(exclude_defaults=True)) == state


@PROPERTY
@given(threads())
def test_events_round_trip_through_json(events: list[ev.Event]) -> None:
    assert [ev.parse_event(e.model_dump_json()) for e in events] == events


def _meta(n: int, actor: str = "cli:operator") -> dict:
    return {"id": f"e{n}", "at": T0 + timedelta(seconds=n), "actor": actor}


def test_status_follows_the_approval_lifecycle() -> None:
    call = ev.ToolCall(**_meta(2, "agent"), call_id="c1", tool="deploy", args={"service": "api"})
    requested = ev.ApprovalRequested(
        **_meta(3, "agent"),
        approval_id="a1",
        call_id="c1",
        tool="deploy",
        args={"service": "api"},
        args_hash="h",
        approvers=["group:oncall"],
        requester="cli:operator",
        allow_self=True,
        expires_at=T0,
    )
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
    state = replay(
        [
            ev.ToolCall(**_meta(4), call_id="c4", tool="x", args={}),
            ev.ToolStarted(**_meta(5), call_id="c4", tool="x"),
            ev.ToolResult(**_meta(6), call_id="c4", tool="x", output="fine"),
        ],
        state=state,
    )
    assert state.consecutive_errors == 0 and state.last_outcome == "fine"


def test_pause_overlays_any_status_until_resumed() -> None:
    events: list[ev.Event] = [
        ev.ThreadStarted(**_meta(0), agent="a", channel="cli", conversation="c", requester="u"),
        ev.ToolCall(**_meta(1), call_id="q", tool="ask_human", args={"question": "which env?"}),
        ev.HumanQuestion(**_meta(2), call_id="q", question="which env?"),
        ev.Paused(**_meta(3)),
    ]
    paused = replay(events, "t")
    assert paused.effective_status == "paused" and paused.status == "awaiting_human"
    resumed = reduce(paused, ev.Resumed(**_meta(4)))
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


def test_the_pending_approval_is_the_request_s_terms_in_the_snapshot_shape_it_always_had() -> None:
    """One definition of the shape (`ApprovalTerms`), and no event fields in the stored snapshot."""
    terms = {
        "approval_id",
        "call_id",
        "tool",
        "args",
        "args_hash",
        "approvers",
        "requester",
        "allow_self",
        "expires_at",
        "digest",  # added with quorum approvals, with defaults: older snapshots still read
        "needed",
    }
    assert set(ev.ApprovalTerms.model_fields) == terms and terms < set(ev.ApprovalRequested.model_fields)
    requested = ev.ApprovalRequested(
        **_meta(2, "agent"),
        approval_id="a1",
        call_id="c1",
        tool="deploy",
        args={"service": "api"},
        args_hash="h",
        approvers=["group:oncall"],
        requester="cli:operator",
        allow_self=True,
        expires_at=T0,
    )
    events: list[ev.Event] = [
        ev.ThreadStarted(**_meta(0), agent="a", channel="cli", conversation="c", requester="cli:operator"),
        ev.ToolCall(**_meta(1, "agent"), call_id="c1", tool="deploy", args={"service": "api"}),
        requested,
    ]
    state = replay(events, "t1")
    assert type(state.pending_approval) is ev.ApprovalTerms
    assert set(state.model_dump(mode="json")["pending_approval"]) == terms
    # A snapshot stored before the shape moved into events.py (reducer.PendingApproval) loads as the same state.
    stored = {
        "approval_id": "a1",
        "call_id": "c1",
        "tool": "deploy",
        "args": {"service": "api"},
        "args_hash": "h",
        "approvers": ["group:oncall"],
        "requester": "cli:operator",
        "allow_self": True,
        "expires_at": "2026-11-23T12:00:00Z",
    }
    assert ThreadState.model_validate({**state.model_dump(mode="json"), "pending_approval": stored}) == state
