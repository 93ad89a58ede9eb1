"""The control flow end to end on one Redis: commands, approvals, rejections, questions, limits."""

from __future__ import annotations

import json
from pathlib import Path

from core.domain import events as ev
from core.domain.people import who
from tests.conftest import APPROVER, ScriptedModel, call


async def test_gated_deploy_waits_for_approval_then_runs_once(redis_client, make_harness, tmp_path: Path) -> None:
    h = make_harness(redis_client)
    await h.say("/deploy api 1.4.2 production")
    request = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]
    assert len(request) == 1 and request[0].args == {"service": "api", "version": "1.4.2", "environment": "production"}
    await h.say(f"approve {request[0].approval_id}", sender=APPROVER)
    await h.say(f"approve {request[0].approval_id}", sender=APPROVER)
    state = json.loads((tmp_path / "data" / "deployments.json").read_text())
    deploys = [e for e in state["history"] if e["action"] == "deploy"]
    assert [(d["service"], d["version"], d["by"]) for d in deploys] == [("api", "1.4.2", "cli:operator")]
    texts = [o.text for o in await h.outbox() if isinstance(o, ev.Reply | ev.Notice)]
    assert any("deployed api 1.4.2 to production" in t for t in texts)
    assert any(f"already approved by {who(APPROVER)}" in t for t in texts)


async def test_model_sees_rejection_reason(redis_client, make_harness) -> None:
    model = ScriptedModel([call("deploy", service="api", version="1.4.2", environment="production")])
    h = make_harness(redis_client, model)
    await h.say("ship api 1.4.2 to prod")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    model.script.append(call("reply", message="ok, not deploying"))
    await h.say(f"reject {approval.approval_id} not during the freeze", sender=APPROVER)
    last = model.requests[-1].history
    errors = [e for e in last if isinstance(e, ev.ToolErrorEvent)]
    assert errors[-1].kind == "rejected" and "not during the freeze" in errors[-1].error
    assert not any(isinstance(e, ev.ToolStarted) for e in last)


async def test_an_approver_outside_the_group_is_refused_and_the_thread_stays_pending(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await h.say("/restart api production")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"approve {approval.approval_id}", sender="cli:mallory")
    refusal = [o for o in await h.outbox() if isinstance(o, ev.Notice) and o.to == "cli:mallory"]
    assert (
        "<who:cli:mallory> may not decide approval" in refusal[-1].text
        and "the oncall group (<who:cli:dana>, <who:cli:operator>)" in refusal[-1].text
    )
    assert "you are not one of its allowed approvers" in refusal[-1].text, "the true reason: not a member"
    state = (await h.wiring.store.list_threads())[0]
    assert state.status == "awaiting_approval" and state.pending_approval.approval_id == approval.approval_id
    record = await h.wiring.store.get_approval(approval.approval_id)
    assert record is not None and record.status == "pending"


async def test_an_unknown_approval_id_is_a_clear_refusal(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await h.say("approve zzzz9999")
    notice = (await h.outbox())[-1]
    assert isinstance(notice, ev.Notice) and "there is no approval 'zzzz9999'" in notice.text
    assert await h.wiring.store.list_threads() == []


async def test_the_requester_cannot_approve_their_own_request_when_policy_forbids(
    fake_redis, make_harness, tmp_path
) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\noncall = ['cli:operator', 'cli:dana']\n"
        "[tools.wipe]\ndescription = 'Wipe a cache.'\nexecutor = {kind='command', argv=['echo', 'wiped']}\n"
        "approval = {required=true, approvers=['group:oncall'], allow_self=false}\n"
    )
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(tools))
    await h.say("/wipe")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"approve {approval.approval_id}")
    assert "you requested it" in (await h.outbox())[-1].text
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    replies = [o.text for o in await h.outbox() if isinstance(o, ev.Reply)]
    assert replies == ["wiped"]


async def test_the_same_trigger_delivered_twice_is_applied_once(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    trigger = h.trigger("/status api staging")
    await h.wiring.threads.handle(trigger)
    await h.wiring.threads.handle(trigger)
    events = await h.wiring.store.load_events((await h.wiring.store.list_threads())[0].thread_id)
    assert [e.type for e in events].count("user_message") == 1
    assert [e.type for e in events].count("tool_started") == 1


async def test_channel_retries_with_one_dedup_key_enqueue_once(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    first = h.trigger("/status api staging").model_copy(update={"dedup_key": "slack:ev:Ev1"})
    retry = h.trigger("/status api staging").model_copy(update={"dedup_key": "slack:ev:Ev1"})
    assert await h.wiring.bus.publish(first)
    assert not await h.wiring.bus.publish(retry)
    await h.drain()
    assert len([o for o in await h.outbox() if isinstance(o, ev.Reply)]) == 1


async def test_ask_human_pauses_and_the_next_message_answers(fake_redis, make_harness) -> None:
    model = ScriptedModel([call("ask_human", question="Which environment?")])
    h = make_harness(fake_redis, model)
    await h.say("restart api")
    assert isinstance((await h.outbox())[-1], ev.Question)
    assert (await h.wiring.store.list_threads())[0].status == "awaiting_human"
    model.script += [call("status", service="api", environment="staging"), call("reply", message="api is fine")]
    await h.say("staging")
    history = model.requests[-2].history
    answer = next(e for e in history if isinstance(e, ev.HumanAnswer))
    assert answer.text == "staging" and answer.actor == "cli:operator"
    assert (await h.outbox())[-1].text == "api is fine"


async def test_three_failures_in_a_row_escalate_instead_of_spinning(fake_redis, make_harness) -> None:
    bad = call("deploy", service="api", version="latest", environment="staging")
    model = ScriptedModel([bad, bad, bad, call("reply", message="never reached")])
    h = make_harness(fake_redis, model)
    await h.say("deploy api latest to staging")
    state = (await h.wiring.store.list_threads())[0]
    assert state.status == "awaiting_human" and state.consecutive_errors == 3
    question = (await h.outbox())[-1]
    assert isinstance(question, ev.Question) and "3 failed steps in a row" in question.question
    assert len(model.requests) == 3


async def test_the_step_limit_escalates_to_a_human(fake_redis, make_harness) -> None:
    model = ScriptedModel(lambda request: call("status", service="api", environment="staging"))
    h = make_harness(fake_redis, model, BOT_STEP_LIMIT="4")
    await h.say("keep checking api")
    assert len(model.requests) == 4
    question = (await h.outbox())[-1]
    assert isinstance(question, ev.Question) and "limit of 4 steps" in question.question


async def test_pause_stops_the_loop_and_resume_continues(fake_redis, make_harness) -> None:
    model = ScriptedModel([call("ask_human", question="which service?")])
    h = make_harness(fake_redis, model)
    await h.say("restart something")
    thread_id = (await h.wiring.store.list_threads())[0].thread_id
    control = ev.ControlTrigger(
        id="c1", channel="cli", conversation=h.conversation, sender="cli:operator", thread_id=thread_id, action="pause"
    )
    await h.wiring.threads.handle(control)
    await h.wiring.threads.handle(control.model_copy(update={"id": "c2"}))
    assert "already paused" in (await h.outbox())[-1].text
    await h.say("api")  # answered while paused: saved, not acted on
    assert len(model.requests) == 1 and (await h.wiring.store.load_state(thread_id)).effective_status == "paused"
    model.script.append(call("reply", message="restarting api next"))
    await h.wiring.threads.handle(control.model_copy(update={"id": "c3", "action": "resume"}))
    assert (await h.wiring.store.load_state(thread_id)).status == "done"
    assert (await h.outbox())[-1].text == "restarting api next"


async def test_an_interrupted_tool_is_not_rerun_blindly(fake_redis, make_harness) -> None:
    """A worker died after tool_started: the next worker records the interruption and asks a human."""
    h = make_harness(fake_redis)
    await h.say("/deploy api 1.4.2 staging")
    thread_id = (await h.wiring.store.list_threads())[0].thread_id
    state = await h.wiring.store.load_state(thread_id)
    started = [
        ev.UserMessage(id="x1", at=h.clock.now(), actor="cli:operator", text="/restart api staging", trigger_id="tx"),
        ev.ToolCall(
            id="x2",
            at=h.clock.now(),
            actor="agent",
            call_id="cx",
            tool="restart",
            args={"service": "api", "environment": "staging"},
        ),
        ev.ToolStarted(id="x3", at=h.clock.now(), actor="agent", call_id="cx", tool="restart"),
    ]
    from core.domain.reducer import replay

    await h.wiring.store.append(state, started, replay(started, state=state))
    await h.say("what happened?")
    events = await h.wiring.store.load_events(thread_id)
    interrupted = [e for e in events if isinstance(e, ev.ToolErrorEvent) and e.kind == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].call_id == "cx"
    assert [e.type for e in events].count("tool_started") == 2, "the restart was not started again"
    assert "was interrupted" in next(o for o in await h.outbox() if isinstance(o, ev.Question)).question


async def test_secrets_never_reach_the_thread_or_the_outbox(fake_redis, make_harness, tmp_path) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[tools.whoami]\ndescription = 'Show credentials.'\n"
        "executor = {kind='command', argv=['sh', '-c', 'echo token=$OPS_API_TOKEN'], env=['OPS_API_TOKEN']}\n"
    )
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(tools), OPS_API_TOKEN="tok-0123456789")
    await h.say("/whoami")
    await h.say("my token is tok-0123456789")
    thread_id = (await h.wiring.store.list_threads())[0].thread_id
    raw = [fields for _, fields in await fake_redis.xrange(f"thread:{{{thread_id}}}:log")]
    assert raw and not any(b"tok-0123456789" in fields[b"e"] for fields in raw)
    assert b"tok-0123456789" not in (await fake_redis.hget(f"thread:{{{thread_id}}}:meta", "state"))
    assert not any("tok-0123456789" in o.model_dump_json() for o in await h.outbox())
    assert "token=[redacted:OPS_API_TOKEN]" in next(o.text for o in await h.outbox() if isinstance(o, ev.Reply))


async def test_a_malformed_inbox_entry_goes_to_the_dead_letter_stream(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await fake_redis.xadd("inbox", {"t": b'{"kind": "message", "text": 42}'})
    await h.drain()
    dead = await fake_redis.xrange("inbox:dead")
    assert len(dead) == 1 and b"malformed trigger" in dead[0][1][b"error"]
    assert (await fake_redis.xpending("inbox", "workers"))["pending"] == 0


async def test_a_policy_can_send_the_request_to_other_channels_too(fake_redis, make_harness, tmp_path) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\noncall = ['cli:operator', 'email:dana@example.com']\n"
        "[tools.failover]\ndescription = 'Fail over the database.'\nexecutor = {kind='command', argv=['echo', 'ok']}\n"
        "approval = {required=true, approvers=['group:oncall'], notify=['email']}\n"
    )
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(tools))
    await h.say("/failover")
    _, mailed = await h.wiring.bus.follow("email", "0-0", block_ms=0)
    shown = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    assert len(mailed) == 1 and isinstance(mailed[0], ev.ApprovalRequest)
    assert mailed[0].approval_id == shown.approval_id and mailed[0].conversation == shown.conversation
    assert mailed[0].approvers == [APPROVER, "email:dana@example.com"], "not the requester: allow_self is off"


async def test_an_approval_given_while_paused_runs_only_after_resume(fake_redis, make_harness, tmp_path) -> None:
    h = make_harness(fake_redis)
    await h.say("/deploy api 1.4.2 production")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    thread_id = (await h.wiring.store.list_threads())[0].thread_id
    control = ev.ControlTrigger(
        id="p1", channel="cli", conversation=h.conversation, sender="cli:operator", thread_id=thread_id, action="pause"
    )
    await h.wiring.threads.handle(control)
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    assert "takes effect when the thread is resumed" in (await h.outbox())[-1].text
    deployments = tmp_path / "data" / "deployments.json"
    assert not deployments.exists() or '"1.4.2"' not in deployments.read_text()
    await h.wiring.threads.handle(control.model_copy(update={"id": "p2", "action": "resume"}))
    assert '"1.4.2"' in deployments.read_text()
    assert (await h.wiring.store.load_state(thread_id)).status == "done"


async def test_channels_notified_of_a_request_learn_its_outcome(fake_redis, make_harness, tmp_path) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\noncall = ['cli:operator', 'email:dana@example.com']\n"
        "[tools.failover]\ndescription = 'Fail over the database.'\nexecutor = {kind='command', argv=['echo', 'ok']}\n"
        "approval = {required=true, approvers=['group:oncall'], notify=['email', 'slack']}\n"
    )
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(tools))
    await h.say("/failover")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    for channel in ("email", "slack"):
        _, items = await h.wiring.bus.follow(channel, "0-0", block_ms=0)
        receipts = [o for o in items if isinstance(o, ev.DecisionReceipt)]
        assert [(r.approval_id, r.decision, r.by) for r in receipts] == [(approval.approval_id, "approve", APPROVER)]
