"""Property: whatever order approvals, rejections, edits and expiry of one gated call arrive in, the call
runs at most once, and only as a request whose quorum was met by approvers other than the requester.

Each example starts `/deploy api 1.2 staging` on a fresh fakeredis and says a generated list of answers
to it through real threads (`tests/test_edits.py`, `tests/test_quorum.py` show them one at a time):
staging needs 2 approvals of the oncall group, production 3, the requester never counts.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fakeredis
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bot.main import build_wiring
from core.domain import events as ev
from core.domain.ids import new_id
from core.redis.store import ApprovalRecord
from core.redis.sweeper import Sweeper
from core.runtime.approvals import digest
from tests import conftest
from tests.conftest import FakeClock, Harness

REQUESTER = "cli:operator"
ONCALL = [REQUESTER, "cli:alice", "cli:bob", "cli:carol"]
SENDERS = [*ONCALL, "cli:mallory"]  # mallory is in no group: every answer of hers is refused
EXPIRES_IN = 3600
GATE = f"required=true, approvers=['group:oncall'], allow_self=false, expires_in={EXPIRES_IN}"
TOOLS = f"""
[groups]
oncall = {ONCALL!r}

[tools.deploy]
description = 'Deploy a version of a service to an environment.'
executor = {{kind='python', target='tests.test_approval_interleavings:deployed'}}
approval = {{{GATE}, approvals=2}}
policies = [{{when={{environment=['production']}}, {GATE}, approvals=3}}]
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version', 'environment']
additionalProperties = false
properties.service = {{type='string'}}
properties.version = {{type='string', pattern='^[0-9]+[.][0-9]+$'}}
properties.environment = {{type='string', enum=['staging', 'production']}}
properties.replicas = {{type='integer', minimum=1}}
"""


async def deployed(**args: Any) -> str:
    """The tool: its output is the arguments it ran with, which the properties compare with the approval."""
    return json.dumps(args, sort_keys=True)


# --- steps -----------------------------------------------------------------------------------
# A step names its request by position among those the thread has opened so far (an edit opens a new
# one): "current" is the newest, "first" the original, "previous" the one before the newest.

TARGETS = st.sampled_from(["current", "current", "first", "previous"])
VALID_EDITS = ["version=1.3", "version=1.4", "environment=production", "environment=staging", "replicas=2"]
EDITS = st.sampled_from(
    [
        *VALID_EDITS,
        "version=1.2",  # the arguments as they stand, for the original: no edit at all
        "version=latest",  # the rest break the schema and are refused
        "environment=moon",
        "replicas=0",
    ]
)
APPROVERS = st.sampled_from(ONCALL[1:])
SHAPES = {
    "approve": st.tuples(st.just("approve"), APPROVERS, st.just("current")),
    "approve-any": st.tuples(st.just("approve"), st.sampled_from(SENDERS), TARGETS),
    "approve-requester": st.tuples(st.just("approve"), st.just(REQUESTER), TARGETS),
    "approve-digest": st.tuples(st.just("approve-digest"), st.sampled_from(SENDERS), TARGETS, TARGETS),
    "edit": st.tuples(st.just("edit"), APPROVERS, st.just("current"), st.sampled_from(VALID_EDITS)),
    "edit-any": st.tuples(st.just("edit"), st.sampled_from(SENDERS), TARGETS, EDITS),
    "reject": st.tuples(st.just("reject"), st.sampled_from(SENDERS), TARGETS),
    "wait": st.tuples(st.just("wait"), st.sampled_from([600, 1800])),  # may cross the deadline, no sweep yet
    "expire": st.just(("expire",)),  # past the deadline, and the sweeper acts on it
}
# Weighed towards approvals and edits: a rejection or an expiry ends the request, and examples that all
# end on their first step would say little about the quorum.
WEIGHTS = {"approve": 6, "edit": 3, "approve-digest": 2}
STEPS = st.sampled_from([shape for shape in SHAPES for _ in range(WEIGHTS.get(shape, 1))]).flatmap(SHAPES.get)


@asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    """A core on its own fakeredis, clock and directory: hypothesis runs every example in one call of the
    test, so function-scoped fixtures (`make_harness`, `fake_redis`) would be shared between examples."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    with tempfile.TemporaryDirectory() as tmp:
        tools = Path(tmp) / "tools.toml"
        tools.write_text(TOOLS)
        settings = conftest.test_settings(Path(tmp), BOT_TOOLS_FILE=str(tools))
        clock = FakeClock()
        env = {"PATH": os.environ.get("PATH", ""), "BOT_TOOLS_FILE": str(tools)}
        try:
            yield Harness(wiring=build_wiring(settings, env, client, clock=clock), clock=clock, user=REQUESTER)
        finally:
            await client.aclose()


async def thread_events(h: Harness) -> tuple[str, list[ev.Event]]:
    [state] = await h.wiring.store.list_threads()
    return state.thread_id, await h.wiring.store.load_events(state.thread_id)


async def requests(h: Harness) -> list[ApprovalRecord]:
    """Every request the thread opened, oldest first, as stored now."""
    _, events = await thread_events(h)
    ids = [e.approval_id for e in events if isinstance(e, ev.ApprovalRequested)]
    records = [await h.wiring.store.get_approval(approval_id) for approval_id in ids]
    assert all(r is not None for r in records), "every request the thread recorded is stored"
    return [r for r in records if r is not None]


def pick(records: list[ApprovalRecord], target: str) -> ApprovalRecord:
    return {"current": records[-1], "first": records[0], "previous": records[max(len(records) - 2, 0)]}[target]


async def apply(h: Harness, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "wait":
        h.clock.advance(step[1])
        return
    if kind == "expire":
        h.clock.advance(EXPIRES_IN + 1)
        await Sweeper(h.wiring.store, h.wiring.bus, h.wiring.tools, h.clock).sweep()
        await h.drain()
        return
    records = await requests(h)
    sender, record = step[1], pick(records, step[2])
    if kind == "approve":
        await h.say(f"approve {record.approval_id}", sender=sender)
    elif kind == "reject":
        await h.say(f"reject {record.approval_id} not now", sender=sender)
    elif kind == "edit":
        await h.say(f"approve {record.approval_id} {step[3]}", sender=sender)
    else:  # an answer through the API's path, for the digest of the card it was shown: maybe a stale one
        shown = pick(records, step[3])
        decision = ev.DecisionTrigger(
            id=new_id(),
            channel="cli",
            conversation=h.conversation,
            sender=sender,
            approval_id=record.approval_id,
            decision="approve",
            digest=shown.digest[: ev.SHORT_DIGEST],
        )
        await h.wiring.bus.publish(decision)
        await h.drain()


async def check(h: Harness) -> None:
    """The properties, over the thread's events and every request it opened."""
    thread_id, events = await thread_events(h)
    records = {r.approval_id: r for r in await requests(h)}
    [call] = [e for e in events if isinstance(e, ev.ToolCall) and e.tool == "deploy"]
    started = [e for e in events if isinstance(e, ev.ToolStarted) and e.call_id == call.call_id]
    results = [e for e in events if isinstance(e, ev.ToolResult) and e.call_id == call.call_id]
    trail = [e.type for e in events]
    assert len(started) <= 1 and len(results) <= 1, f"the call ran more than once: {trail}"
    approved = [r for r in records.values() if r.status == "approved"]
    event(f"ran: {bool(started)}; requests: {sorted(r.status for r in records.values())}")
    assert len(approved) <= 1, f"more than one request approved: {approved}"
    if not started:
        assert not approved, f"a request was approved but its call never ran: {trail}"
        return
    assert len(results) == 1, f"the call started but has no result: {trail}"
    ran = json.loads(results[0].output)
    before = events[: events.index(started[0])]
    decided = [e for e in before if isinstance(e, ev.ApprovalDecided)]
    assert decided and decided[-1].decision == "approve", f"the call ran with no approval before it: {trail}"
    record = records[decided[-1].approval_id]
    where = f"ran {ran} under {record.model_dump(include={'approval_id', 'status', 'args', 'needed', 'votes'})}"
    assert record.status == "approved", where
    assert ran == record.args, where
    assert digest("deploy", ran, thread_id) == record.digest, where
    voters = {vote.by for vote in record.votes}
    assert len(voters) == len(record.votes) and len(voters) >= record.needed, where
    assert REQUESTER not in voters and voters <= set(ONCALL), where
    assert all(vote.at < record.expires_at for vote in record.votes), f"an approval after the deadline: {where}"
    needed = 3 if ran["environment"] == "production" else 2
    assert record.needed == needed, f"the request is under the wrong policy: {where}"
    ended = [e for e in before if isinstance(e, ev.ToolErrorEvent) and e.kind in ("rejected", "expired")]
    assert not ended, f"the call ran after its request ended: {trail}"
    assert approved == [record], where  # and so no rejected, expired or edited request ran


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(steps=st.lists(STEPS, min_size=1, max_size=12))
async def test_any_interleaving_runs_the_call_at_most_once_and_only_as_approved(
    steps: list[tuple[Any, ...]],
) -> None:
    async with harness() as h:
        await h.say("/deploy api 1.2 staging")
        for step in steps:
            await apply(h, step)
        await check(h)
