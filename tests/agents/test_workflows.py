"""Workflows run through the agent loop: same events, same approval gates, resumable anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain.ids import thread_id_for
from core.runtime.workflows.stale_deploys import report
from tests.agents.conftest import MakeCrew, replies, thread_events
from tests.conftest import APPROVER, Harness, ScriptedModel, call


def live(tmp_path: Path, service: str, environment: str) -> str:
    state = json.loads((tmp_path / "data" / "deployments.json").read_text())
    return str(state["services"][service][environment]["version"])


def calls(events: list[ev.Event]) -> list[str]:
    return [e.tool for e in events if isinstance(e, ev.ToolCall)]


async def approval(h: Harness) -> ev.ApprovalRequest:
    return [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)][-1]


async def test_a_release_pauses_for_approval_and_resumes_on_another_process(
    redis_pair: tuple[aioredis.Redis, aioredis.Redis], make_crew: MakeCrew, tmp_path: Path
) -> None:
    first, second = make_crew(redis_pair[0]), make_crew(redis_pair[1])
    second.conversation = first.conversation

    await first.say("/release api 1.4.3")

    waiting = await approval(first)
    assert (waiting.tool, waiting.args) == (
        "deploy",
        {"service": "api", "version": "1.4.3", "environment": "production"},
    )
    assert waiting.reason.startswith("release: api 1.4.3 to production: the tests passed (ran ")
    assert (await first.wiring.store.list_threads())[0].status == "awaiting_approval"

    await second.say(
        f"approve {waiting.approval_id}", sender=APPROVER
    )  # another process: nothing in memory carried over

    events = await thread_events(second)
    assert calls(events) == ["run_tests", "deploy", "health", "reply"]
    assert [e.type for e in events if e.type.startswith("approval")] == ["approval_requested", "approval_decided"]
    [done] = await replies(second)
    assert done.startswith("released api 1.4.3 to production: the tests passed, it is deployed and healthy.")
    assert live(tmp_path, "api", "production") == "1.4.3"
    state = await second.wiring.store.load_state(thread_id_for("cli", first.conversation))
    assert (state.agent, state.status) == ("release", "done")


async def test_a_failing_health_check_rolls_back_and_tells_the_requester(
    fake_redis: aioredis.Redis, make_crew: MakeCrew, tmp_path: Path
) -> None:
    h = make_crew(fake_redis, DEPLOYCTL_UNHEALTHY="api@1.4.3")
    await h.say("/release api 1.4.3")
    await h.say(f"approve {(await approval(h)).approval_id}", sender=APPROVER)

    rollback = await approval(h)  # a production rollback is gated too: the policy is code
    assert (rollback.tool, rollback.args) == ("rollback", {"service": "api", "environment": "production"})
    assert "unhealthy after the deploy (health exited with status 1: api 1.4.3 in production is unhealthy" in (
        rollback.reason
    )
    await h.say(f"approve {rollback.approval_id}", sender=APPROVER)

    events = await thread_events(h)
    assert calls(events) == ["run_tests", "deploy", "health", "rollback", "reply"]
    [error] = [e for e in events if isinstance(e, ev.ToolErrorEvent)]
    assert (error.tool, error.kind) == ("health", "failed")
    [told] = await replies(h)
    assert told.startswith(
        "cli:operator: api 1.4.3 to production was unhealthy after the deploy, so it was rolled back."
    )
    assert "rollback: rolled back api in production from 1.4.3 to 1.0.0" in told
    assert live(tmp_path, "api", "production") == "1.0.0"


async def test_failing_tests_stop_the_release_before_anything_is_deployed(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis, DEPLOYCTL_FAIL_TESTS="api")
    await h.say("/release api 1.4.3")
    assert calls(await thread_events(h)) == ["run_tests", "reply"]
    [told] = await replies(h)
    assert told.startswith("release of api 1.4.3 to production stopped: the tests failed, nothing was deployed.")
    assert not [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]


async def test_a_rejected_deploy_ends_the_release_with_the_reason(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("/release api 1.4.3")
    await h.say(f"reject {(await approval(h)).approval_id} not during the freeze", sender=APPROVER)
    assert calls(await thread_events(h)) == ["run_tests", "deploy", "reply"]
    assert await replies(h) == [
        "release of api 1.4.3 to production stopped before the deploy: rejected by <who:cli:dana>: not during the freeze"
    ]


async def test_a_failed_deploy_is_handed_to_the_incident_agent_for_judgement(
    fake_redis: aioredis.Redis, make_crew: MakeCrew, tmp_path: Path
) -> None:
    incident = ScriptedModel([call("reply", message="the deployment record is corrupt; fix it, then release again")])
    h = make_crew(fake_redis, {"incident": incident})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "deployments.json").write_text("{not json")  # deployctl cannot deploy

    await h.say("/release api 1.4.3 staging")

    events = await thread_events(h)
    [handed] = [e for e in events if isinstance(e, ev.HandedOff)]
    assert (handed.from_agent, handed.to_agent) == ("release", "incident")
    assert handed.note.startswith("release of api 1.4.3 to staging: the tests passed but the deploy failed: deploy")
    [request] = incident.requests
    assert request.state.agent == "incident" and request.state.turn_mode == "model"
    assert await replies(h) == ["the deployment record is corrupt; fix it, then release again"]


async def test_a_paused_release_records_the_decision_and_continues_on_resume(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("/release api 1.4.3 staging")  # staging: no approval, the whole release runs
    await h.say("/release api 1.4.4")
    thread_id = thread_id_for("cli", h.conversation)
    control = ev.ControlTrigger(
        id="c1", channel="cli", conversation=h.conversation, sender="cli:operator", thread_id=thread_id, action="pause"
    )
    await h.wiring.threads.handle(control)
    await h.say(f"approve {(await approval(h)).approval_id}", sender=APPROVER)
    assert calls(await thread_events(h))[-1] == "deploy", "approved while paused: the deploy has not run"
    assert (await h.wiring.store.load_state(thread_id)).effective_status == "paused"

    await h.wiring.threads.handle(control.model_copy(update={"id": "c2", "action": "resume"}))

    assert calls(await thread_events(h)) == ["run_tests", "deploy", "health", "reply"] * 2
    assert (await replies(h))[-1].startswith("released api 1.4.4 to production")


async def test_a_trigger_can_launch_a_workflow_by_name(fake_redis: aioredis.Redis, make_crew: MakeCrew) -> None:
    h = make_crew(fake_redis)
    await h.wiring.threads.handle(h.trigger("api 1.4.3 staging").model_copy(update={"agent": "release"}))
    assert (await replies(h))[-1].startswith("released api 1.4.3 to staging")
    await h.say("/release api latest")
    assert (await replies(h))[-1].startswith("release: version: 'latest' does not match")
    assert "usage: /release <service> <version> [environment]" in (await replies(h))[-1]


async def test_free_text_after_a_workflow_goes_back_to_the_agents(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("/release api 1.4.3 staging")
    await h.say("thanks, what next?")
    handed = [e for e in await thread_events(h) if isinstance(e, ev.HandedOff)]
    assert [(e.from_agent, e.to_agent) for e in handed] == [("release", "deploybot")]
    assert (await replies(h))[-1].startswith("I can't read free text yet")


async def test_the_stale_deploys_report_lists_services_that_differ(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("/deploy api 1.4.3 staging")
    await h.say("/stale_deploys")
    assert (await replies(h))[-1] == (
        "stale deploys: 1 of 4 services differ between staging and production (promote the release, or bring "
        "staging back):\n- api: staging 1.4.3, production 1.0.0"
    )


def test_the_report_says_when_nothing_is_stale_or_the_list_is_unreadable() -> None:
    listing: Any = "api  staging=1.0.0  production=1.0.0\nweb  staging=2.0.0  production=2.0.0"
    assert report(listing) == "stale deploys: none; all 2 services run the same version in staging and production."
    assert report("boom").startswith("stale deploys: cannot read the service list:")
