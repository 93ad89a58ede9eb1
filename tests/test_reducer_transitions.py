"""The reducer owns the thread's invariants: the transition table, and what each event must fit.

The property: any sequence of events is either accepted whole, each state's status the one the
table gives, or refused at its first illegal event with `IllegalEvent`, the state before it
unchanged; and `reduce` is pure throughout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import events as ev
from core.domain.errors import IllegalEvent
from core.domain.reducer import TRANSITIONS, WHILE_PAUSED, Status, ThreadState, allowed, reduce, replay, type_name

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KINDS: list[type[ev.Event]] = list(get_args(get_args(ev.Event)[0]))  # the members of the event union
CALLS = ["c1", "c2", "c3"]
APPROVALS = ["a1", "a2"]
STEPS = (ev.ModelCall, ev.ToolCall, ev.ToolStarted, ev.ApprovalRequested, ev.HumanQuestion, ev.AgentReply, ev.Escalated)
texts = st.text(max_size=20)
args = st.dictionaries(st.sampled_from(["service", "version", "environment"]), st.text(max_size=8), max_size=3)

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def expected(state: ThreadState, event: ev.Event) -> Status | None:
    """The spec, said a second time: the status `event` leads to, or None when it must be refused."""
    row = TRANSITIONS.get(state.status, {})
    kind, running, last, pending = type(event), state.running, state.last_call, state.pending_approval
    if kind not in row or (state.paused and kind not in WHILE_PAUSED) or (not state.paused and kind is ev.Resumed):
        return None
    rerun = isinstance(event, ev.ToolStarted) and running is not None and event.call_id == running.call_id
    asked = (pending.approval_id, pending.call_id) if pending else None
    misfits = [
        # One tool at a time: a started tool needs its result (or "interrupted") before any other step.
        running is not None and isinstance(event, STEPS) and not rerun,
        isinstance(event, ev.ToolStarted | ev.ApprovalRequested | ev.HumanQuestion | ev.GrantUsed)
        and (last is None or last.call_id != event.call_id),
        isinstance(event, ev.ToolResult) and (running is None or running.call_id != event.call_id),
        # A preview is of the gated call just made; its request follows in the same commit.
        isinstance(event, ev.ToolPreviewed) and (last is None or last.call_id != event.call_id),
        isinstance(event, ev.ApprovalDecided | ev.ApprovalVoted | ev.ApprovalSnoozed | ev.ArgumentsEdited)
        and asked != (event.approval_id, event.call_id),
        # A server asks, and is answered, only during its tool's call; an answer is for the question asked.
        isinstance(event, ev.ServerAsked | ev.ServerAnswered) and (running is None or running.call_id != event.call_id),
        isinstance(event, ev.ServerAnswered) and state.asking != event.ask_id,
    ]
    return None if any(misfits) else row[kind]


def _call_id(state: ThreadState, kind: type[ev.Event], n: int) -> str:
    """The call id a runtime would give an event of `kind` now."""
    if kind is ev.ToolCall:
        return f"c{n}"
    if kind in (ev.ToolResult, ev.ServerAsked, ev.ServerAnswered) and state.running is not None:
        return state.running.call_id
    if (
        kind in (ev.ApprovalDecided, ev.ApprovalVoted, ev.ApprovalSnoozed, ev.ArgumentsEdited)
        and state.pending_approval is not None
    ):
        return state.pending_approval.call_id
    return state.last_call.call_id if state.last_call is not None else "c0"


def event_of(draw: st.DrawFn, kind: type[ev.Event], n: int, state: ThreadState, fit: bool) -> ev.Event:  # noqa: C901 - one flat case per event type
    """An event of `kind` with plausible fields; with `fit`, its ids are the ones the thread holds."""
    meta = {"id": f"e{n:04d}", "at": T0 + timedelta(seconds=n), "actor": draw(st.sampled_from(["cli:op", "agent"]))}
    call_id = _call_id(state, kind, n) if fit else draw(st.sampled_from(CALLS))
    pending = state.pending_approval
    approval_id = pending.approval_id if fit and pending else draw(st.sampled_from(APPROVALS))
    tool = state.last_call.tool if fit and state.last_call else draw(st.sampled_from(["deploy", "status"]))
    trigger_id = f"t{n}"
    match kind:
        case ev.ThreadStarted:
            return ev.ThreadStarted(**meta, agent="deploybot", channel="cli", conversation="c", requester="cli:op")
        case ev.UserMessage:
            return ev.UserMessage(
                **meta, text=draw(st.sampled_from(["/status api", "what broke?"])), trigger_id=trigger_id
            )
        case ev.ModelCall:
            return ev.ModelCall(
                **meta, prompt_name="p", prompt_hash="h", model="m", input_tokens=draw(st.integers(0, 9))
            )
        case ev.ToolCall:
            return ev.ToolCall(
                **meta, call_id=call_id, tool=draw(st.sampled_from(["deploy", "status"])), args=draw(args)
            )
        case ev.ToolStarted:
            return ev.ToolStarted(**meta, call_id=call_id, tool=tool)
        case ev.ToolResult:
            return ev.ToolResult(**meta, call_id=call_id, tool=tool, output=draw(texts))
        case ev.ToolPreviewed:
            return ev.ToolPreviewed(**meta, call_id=call_id, tool=tool, ok=draw(st.booleans()), output=draw(texts))
        case ev.ToolErrorEvent:
            error_kind = draw(st.sampled_from(["invalid", "failed", "rejected", "interrupted", "expired"]))
            return ev.ToolErrorEvent(**meta, call_id=call_id, tool=tool, error=draw(texts), kind=error_kind)
        case ev.ApprovalRequested:
            return ev.ApprovalRequested(
                **meta,
                approval_id=f"a{n}" if fit else approval_id,
                call_id=call_id,
                tool=tool,
                args=draw(args),
                args_hash="h",
                approvers=["group:oncall"],
                requester="cli:op",
                allow_self=draw(st.booleans()),
                expires_at=T0 + timedelta(hours=1),
            )
        case ev.ApprovalDecided:
            decision = draw(st.sampled_from(["approve", "reject", "expire"]))
            return ev.ApprovalDecided(**meta, approval_id=approval_id, call_id=call_id, decision=decision)
        case ev.ApprovalVoted:
            by = draw(st.sampled_from(["cli:dana", "cli:eve"]))
            return ev.ApprovalVoted(
                **meta, approval_id=approval_id, call_id=call_id, by=by, count=1, needed=2, trigger_id=trigger_id
            )
        case ev.ApprovalSnoozed:
            until = T0 + timedelta(minutes=30)
            return ev.ApprovalSnoozed(
                **meta, approval_id=approval_id, call_id=call_id, by="cli:dana", until=until, trigger_id=trigger_id
            )
        case ev.ArgumentsEdited:
            before, after = draw(args), draw(args)
            return ev.ArgumentsEdited(
                **meta,
                approval_id=approval_id,
                call_id=call_id,
                tool=tool,
                before=before,
                after=after,
                by="cli:dana",
                trigger_id=trigger_id,
            )
        case ev.GrantGiven:
            expires = T0 + timedelta(hours=4)
            return ev.GrantGiven(
                **meta, grant_id="g1", approval_id=approval_id, call_id=call_id, tool=tool, requester="cli:op",
                pattern="service=api", by="cli:dana", expires_at=expires, trigger_id=trigger_id,
            )  # fmt: skip
        case ev.GrantUsed:
            expires = T0 + timedelta(hours=4)
            return ev.GrantUsed(
                **meta, grant_id="g1", call_id=call_id, tool=tool, granted_by="cli:dana", args_hash="h", digest="d",
                expires_at=expires,
            )  # fmt: skip
        case ev.HumanQuestion:
            return ev.HumanQuestion(**meta, call_id=call_id, question=draw(texts))
        case ev.HumanAnswer:
            return ev.HumanAnswer(**meta, text=draw(texts), trigger_id=trigger_id)
        case ev.AgentReply:
            return ev.AgentReply(**meta, text=draw(texts))
        case ev.Paused:
            return ev.Paused(**meta, trigger_id=trigger_id)
        case ev.Resumed:
            return ev.Resumed(**meta, trigger_id=trigger_id)
        case ev.DeliveryFailed:
            return ev.DeliveryFailed(**meta, outbound_id="o1", channel="cli", outbound_kind="reply", error="gone")
        case ev.Escalated:
            return ev.Escalated(**meta, reason=draw(texts))
        case ev.HandedOff:
            to = draw(st.sampled_from(["deploybot", "incident", "status"]))
            return ev.HandedOff(**meta, from_agent=state.agent, to_agent=to, call_id=call_id if fit else "")
        case ev.Failed:
            return ev.Failed(**meta, error=draw(texts))
        case ev.ServerAsked:
            return ev.ServerAsked(**meta, call_id=call_id, ask_id=f"q{n}", server="k8s", message=draw(texts))
        case ev.ServerAnswered:
            ask_id = state.asking if fit and state.asking else "q0"
            action = draw(st.sampled_from(["accept", "decline", "cancel"]))
            return ev.ServerAnswered(**meta, call_id=call_id, ask_id=ask_id, action=action, trigger_id=trigger_id)
    raise AssertionError(f"no example for {kind.__name__}")


@st.composite
def threads(draw: st.DrawFn, illegal: bool = False) -> list[ev.Event]:
    """A thread as the runtime could write it: each event one the thread allows then, with fitting ids.

    With `illegal`, one event at a drawn place is of any type with any of the pools' ids instead (often
    illegal, sometimes not); the thread goes on from whatever state that leaves.
    """
    size = draw(st.integers(0, 40))
    wild = draw(st.integers(0, size)) if illegal else -1
    state, events = ThreadState(thread_id="t1"), list[ev.Event]()
    for n in range(size + 1):
        if n == wild:
            event = event_of(draw, draw(st.sampled_from(KINDS)), n, state, fit=draw(st.booleans()))
        else:  # the first kind (in a drawn order) the thread can take now
            for kind in draw(st.permutations(sorted(allowed(state), key=type_name))):
                event = event_of(draw, kind, n, state, fit=True)
                if expected(state, event) is not None:
                    break
        events.append(event)
        if expected(state, event) is not None:
            state = reduce(state, event)
    return events


def check_invariants(state: ThreadState) -> None:
    """What every state the reducer gives must hold; the table and the guards are what keep it."""
    assert state.status in TRANSITIONS and state.status != "paused", "paused is an overlay, never a status"
    assert (state.status == "new") == (state.seq == 0)
    assert (state.pending_approval is not None) == (state.status == "awaiting_approval")
    assert (state.pending_question is not None) == (state.status == "awaiting_human")
    assert state.running is None or state.status == "running", "a started tool ends before the thread waits"
    assert not state.asking or state.running is not None, "a server's question lives only as long as its call"
    assert not state.approval_votes or state.pending_approval is not None, "votes count only towards a pending approval"


def fold_checked(events: list[ev.Event]) -> tuple[ThreadState, int | None]:
    """Fold `events` one by one, checking each step; the last state, and where it was refused (or None)."""
    state = ThreadState(thread_id="t1")
    for index, event in enumerate(events):
        want = expected(state, event)
        state_before, event_before = state.model_dump(), event.model_dump()
        try:
            after = reduce(state, event)
        except IllegalEvent as exc:
            assert want is None, f"{event.type} refused in {state.effective_status}: {exc}"
            assert (exc.event_type, exc.status.split(",")[0]) == (event.type, state.status)
            assert exc.allowed == tuple(type_name(kind) for kind in allowed(state))
            assert state.model_dump() == state_before and event.model_dump() == event_before
            return state, index
        assert want is not None, f"{event.type} accepted in {state.effective_status}, which the table forbids"
        assert after.status == want and after.seq == state.seq + 1
        assert reduce(state, event) == after, "the same input gives the same output"
        assert state.model_dump() == state_before and event.model_dump() == event_before, "inputs not mutated"
        check_invariants(after)
        state = after
    return state, None


@PROPERTY
@given(threads(illegal=True))
def test_any_sequence_is_accepted_whole_by_the_table_or_refused_at_its_first_illegal_event(
    events: list[ev.Event],
) -> None:
    state, refused = fold_checked(events)
    if refused is None:
        assert replay(events, "t1") == state
    else:
        assert replay(events[:refused], "t1") == state
        with pytest.raises(IllegalEvent):
            replay(events, "t1")


@settings(PROPERTY, max_examples=150)
@given(threads())
def test_a_thread_the_runtime_could_write_is_accepted_whole(events: list[ev.Event]) -> None:
    assert fold_checked(events)[1] is None


def test_every_event_type_appears_in_the_table_and_every_status_has_a_row() -> None:
    in_table = {kind for row in TRANSITIONS.values() for kind in row}
    assert in_table == set(KINDS) and WHILE_PAUSED <= in_table
    assert set(TRANSITIONS) == set(get_args(Status)) - {"paused"}
    assert all(target in TRANSITIONS for row in TRANSITIONS.values() for target in row.values())


# --- named illegal transitions ---------------------------------------------------------------


def _meta(n: int, actor: str = "agent") -> dict[str, object]:
    return {"id": f"e{n}", "at": T0 + timedelta(seconds=n), "actor": actor}


def _started() -> list[ev.Event]:
    return [
        ev.ThreadStarted(**_meta(0, "cli:op"), agent="deploybot", channel="cli", conversation="c", requester="cli:op"),
        ev.UserMessage(**_meta(1, "cli:op"), text="/deploy api 1.4.3 production", trigger_id="t1"),
    ]


def _call(n: int, call_id: str = "c1") -> ev.ToolCall:
    return ev.ToolCall(**_meta(n), call_id=call_id, tool="deploy", args={"service": "api"})


def _requested(n: int, approval_id: str = "a1", call_id: str = "c1") -> ev.ApprovalRequested:
    return ev.ApprovalRequested(
        **_meta(n),
        approval_id=approval_id,
        call_id=call_id,
        tool="deploy",
        args={"service": "api"},
        args_hash="h",
        approvers=["group:oncall"],
        requester="cli:op",
        allow_self=False,
        expires_at=T0 + timedelta(hours=1),
    )


def _decided(n: int, approval_id: str = "a1", call_id: str = "c1") -> ev.ApprovalDecided:
    return ev.ApprovalDecided(**_meta(n, "cli:dana"), approval_id=approval_id, call_id=call_id, decision="approve")


def test_a_tool_result_with_no_tool_started_is_refused() -> None:
    state = replay([*_started(), _call(2)], "t1")
    with pytest.raises(IllegalEvent, match="no tool was started for call c1; no tool is running") as refused:
        reduce(state, ev.ToolResult(**_meta(3), call_id="c1", tool="deploy", output="ok"))
    assert (refused.value.event_type, refused.value.status) == ("tool_result", "running")


def test_an_approval_decided_that_was_never_requested_is_refused() -> None:
    running = replay([*_started(), _call(2)], "t1")
    with pytest.raises(IllegalEvent, match="a thread that is running does not take it") as refused:
        reduce(running, _decided(3))
    assert "approval_decided" not in refused.value.allowed and "approval_requested" in refused.value.allowed
    waiting = reduce(running, _requested(3))
    with pytest.raises(IllegalEvent, match="approval a2 .* is not awaited; the thread awaits approval a1"):
        reduce(waiting, _decided(4, "a2"))


def test_a_decision_arriving_after_the_approval_was_decided_is_refused() -> None:
    decided = replay([*_started(), _call(2), _requested(3), _decided(4)], "t1")
    with pytest.raises(IllegalEvent, match="a thread that is running does not take it"):
        reduce(decided, _decided(5))


def test_a_paused_thread_records_messages_but_takes_no_step() -> None:
    paused = replay([*_started(), ev.Paused(**_meta(2, "cli:op"))], "t1")
    with pytest.raises(IllegalEvent, match=r"\(running, paused, after event 3\)") as refused:
        reduce(paused, _call(3))
    assert refused.value.allowed == ("user_message", "resumed", "delivery_failed")
    with pytest.raises(IllegalEvent, match="cannot take paused"):
        reduce(paused, ev.Paused(**_meta(3, "cli:op")))
    recorded = reduce(paused, ev.UserMessage(**_meta(3, "cli:op"), text="and staging", trigger_id="t3"))
    assert recorded.paused and recorded.recent_triggers == ("t1", "t3")


def test_only_a_paused_thread_can_be_resumed() -> None:
    with pytest.raises(IllegalEvent, match="cannot take resumed"):
        replay([*_started(), ev.Resumed(**_meta(2, "cli:op"))], "t1")


def test_a_thread_starts_once_and_nothing_comes_before_its_start() -> None:
    with pytest.raises(
        IllegalEvent, match=r"\(new, after event 0\) cannot take user_message .* allowed now: thread_started"
    ):
        replay(_started()[1:], "t1")
    with pytest.raises(IllegalEvent, match="cannot take thread_started"):
        replay([*_started(), _started()[0]], "t1")


def test_no_step_is_taken_while_a_started_tool_has_no_result() -> None:
    """A dead worker's tool is re-run (same call) or recorded as interrupted before anything else happens."""
    started = [*_started(), _call(2), ev.ToolStarted(**_meta(3), call_id="c1", tool="deploy")]
    with pytest.raises(IllegalEvent, match=r"deploy \(call c1\) was started and has no result yet"):
        replay([*started, _call(4, "c2")], "t1")
    with pytest.raises(IllegalEvent, match="was started and has no result yet"):
        replay([*started, ev.AgentReply(**_meta(4), text="done")], "t1")
    rerun = replay([*started, ev.ToolStarted(**_meta(4), call_id="c1", tool="deploy")], "t1")
    assert rerun.running is not None and rerun.running.call_id == "c1"
    interrupted = ev.ToolErrorEvent(**_meta(4), call_id="c1", tool="deploy", error="interrupted", kind="interrupted")
    escalated = replay([*started, interrupted, ev.Escalated(**_meta(5), reason="check it")], "t1")
    assert (escalated.status, escalated.running) == ("awaiting_human", None)


def test_a_tool_starts_only_for_the_thread_s_last_call() -> None:
    with pytest.raises(IllegalEvent, match=r"call c9 is not the thread's last call \(c1\)"):
        replay([*_started(), _call(2), ev.ToolStarted(**_meta(3), call_id="c9", tool="deploy")], "t1")


def test_a_done_thread_takes_a_new_message_as_a_new_turn_and_nothing_of_the_old_one() -> None:
    done = replay([*_started(), _call(2), ev.AgentReply(**_meta(3), text="deployed")], "t1")
    with pytest.raises(IllegalEvent, match=r"\(done, after event 4\) cannot take tool_call .* allowed now: "):
        reduce(done, _call(4, "c2"))
    again = reduce(done, ev.UserMessage(**_meta(4, "cli:op"), text="and staging?", trigger_id="t4"))
    assert (again.status, again.turn_steps, again.steps) == ("running", 0, 1)


def test_a_stored_log_with_an_event_the_table_refuses_still_replays() -> None:
    """A log an older version wrote is read whole (`stored=True`): the refused event is applied with the status
    kept, so the thread stays readable; a new event never gets in that way (`reduce` refuses it)."""
    log = [*_started(), _call(2), ev.ToolResult(**_meta(3), call_id="c1", tool="deploy", output="ok")]
    with pytest.raises(IllegalEvent):
        replay(log, "t1")
    state = replay(log, "t1", stored=True)
    assert (state.seq, state.status) == (4, "running")
