"""Routing and hand-offs: commands go to the agent that owns the tool, free text to the router."""

from __future__ import annotations

import json

import anthropic
import pytest
import redis.asyncio as aioredis

from config import resources
from core.domain import events as ev
from core.domain.ids import new_id, thread_id_for
from core.model.anthropic import AnthropicModel
from core.model.context import render
from core.model.prompts import PromptLibrary
from tests.agents.conftest import MakeCrew, replies, thread_events
from tests.conftest import ScriptedModel, call
from tests.fake_anthropic import FakeAnthropic, tool_use

MODEL = "claude-sonnet-4-6"


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ("/status api staging", "deploybot"),  # the default agent has it
        ("/deploy api 1.4.3 staging", "deploybot"),
        ("/restart api staging", "incident"),  # the first agent declared with it
        ("/health api staging", "incident"),
        ("/release api 1.4.3 staging", "release"),  # a workflow's own command
        ("/stale_deploys", "stale_deploys"),
        ("/explode", "deploybot"),  # nobody's: the default agent says what is wrong
        ("help", "deploybot"),  # no model: free text goes to the default agent
        ("/help", "deploybot"),
        ("status api staging", "deploybot"),  # a command without its slash
        ("restart api staging", "incident"),
    ],
)
async def test_a_command_starts_its_thread_with_the_agent_that_owns_the_tool(
    fake_redis: aioredis.Redis, make_crew: MakeCrew, text: str, agent: str
) -> None:
    h = make_crew(fake_redis)
    await h.say(text)
    started = (await thread_events(h))[0]
    assert isinstance(started, ev.ThreadStarted) and started.agent == agent
    assert (await h.wiring.store.load_state(thread_id_for("cli", h.conversation))).agent == agent


async def test_a_command_for_another_agents_tool_hands_the_thread_on(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("/status api staging")
    await h.say("/restart api staging")
    await h.say("/status api staging")  # incident has status too: the thread stays there

    events = await thread_events(h)
    [handed] = [e for e in events if isinstance(e, ev.HandedOff)]
    assert (handed.from_agent, handed.to_agent, handed.call_id) == ("deploybot", "incident", "")
    assert handed.note == "/restart is a command of the incident agent" and handed.actor == "cli:operator"
    assert len(await h.wiring.store.list_threads()) == 1
    answers = await replies(h)
    assert answers[0].startswith("api in staging: 1.0.0") and answers[1].startswith("restarted api 1.0.0 in staging")
    assert len(answers) == 3


async def test_free_text_goes_to_the_router_which_hands_it_to_the_right_agent(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    router = ScriptedModel([call("hand_to_incident", note="api in production answers 500s; find out why")])
    incident = ScriptedModel(
        [call("health", service="api", environment="production"), call("reply", message="api is healthy now.")]
    )
    h = make_crew(fake_redis, {"router": router, "incident": incident})

    await h.say("api is throwing 500s in prod!")

    assert await replies(h) == ["api is healthy now."]
    state = (await h.wiring.store.list_threads())[0]
    assert (state.agent, state.status) == ("incident", "done")
    [asked] = router.requests
    assert sorted(asked.tools.names()) == [
        "ask_human",
        "hand_to_deploybot",
        "hand_to_incident",
        "hand_to_status",
        "reply",
    ]
    assert "hand the request to it" not in asked.tools.get("hand_to_incident").description
    assert asked.tools.get("hand_to_incident").description.startswith("Hand this thread to the incident agent, which")
    first = incident.requests[0]
    assert "health" in first.tools and "deploy" not in first.tools, "the incident agent's own tools"
    events = await thread_events(h)
    started, handed = events[0], next(e for e in events if isinstance(e, ev.HandedOff))
    assert isinstance(started, ev.ThreadStarted) and started.agent == "router"
    assert (handed.from_agent, handed.to_agent) == ("router", "incident") and handed.call_id


async def test_a_hand_off_keeps_the_thread_id_and_the_context_the_next_agent_needs(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    deploybot = ScriptedModel(
        [
            call("list_services"),
            call("hand_to_incident", note="payments looks stuck after the last deploy; the operator wants it fixed"),
        ]
    )
    incident = ScriptedModel([call("reply", message="restarting payments needs approval; ask me to proceed")])
    h = make_crew(fake_redis, {"deploybot": deploybot, "incident": incident})
    thread_id = thread_id_for("cli", h.conversation)

    await h.say("/list_services")
    await h.say("payments is stuck, sort it out")

    assert [s.thread_id for s in await h.wiring.store.list_threads()] == [thread_id]
    [request] = incident.requests
    assert request.state.thread_id == thread_id and request.state.agent == "incident"
    texts = [e.text for e in request.history if isinstance(e, ev.UserMessage)]
    assert texts == ["/list_services", "payments is stuck, sort it out"]
    messages = render(request.history, set(request.tools.names()), 8000)
    seen = "\n".join(b.get("text", "") for m in messages for b in m["content"] if b["type"] == "text")
    assert '<earlier_call tool="list_services" agent="deploybot">' in seen and "api  staging=1.0.0" in seen
    assert '<handed_off from="deploybot" to="incident">\npayments looks stuck' in seen
    used = {b["name"] for m in messages for b in m["content"] if b["type"] == "tool_use"}
    assert used == {"reply"}, "the API sees only calls of tools this agent has"
    assert await h.wiring.store.rebuild_state(thread_id) == await h.wiring.store.load_state(thread_id)


async def test_without_a_model_free_text_gets_the_command_list_from_the_default_agent(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("is api up?")
    [answer] = await replies(h)
    assert answer.startswith("I can't read free text yet")
    assert "/release <service> <version> [environment]" in answer and "/health <service> <environment>" in answer
    assert (await h.wiring.store.list_threads())[0].agent == "deploybot"


async def test_a_trigger_may_name_the_agent_but_not_an_unknown_one(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    status = ScriptedModel([call("reply", message="all services run 1.0.0")])
    h = make_crew(fake_redis, {"status": status})
    await h.wiring.threads.handle(h.trigger("what runs where?").model_copy(update={"agent": "status"}))
    assert (await h.wiring.store.list_threads())[0].agent == "status"

    other = h.trigger("hi").model_copy(update={"agent": "mailbot", "conversation": f"x/{new_id()}"})
    await h.wiring.threads.handle(other)
    notice = (await h.outbox())[-1]
    assert isinstance(notice, ev.Notice) and notice.to == "cli:operator"
    assert "there is no agent 'mailbot'; agents: deploybot, incident, status, router, release" in notice.text
    assert len(await h.wiring.store.list_threads()) == 1


async def test_each_agent_stops_at_its_own_step_limit(fake_redis: aioredis.Redis, make_crew: MakeCrew) -> None:
    status = ScriptedModel(lambda request: call("status", service="api", environment="staging"))
    h = make_crew(fake_redis, {"status": status})
    await h.wiring.threads.handle(h.trigger("keep watching api").model_copy(update={"agent": "status"}))
    assert len(status.requests) == 6
    question = (await h.outbox())[-1]
    assert isinstance(question, ev.Question) and "limit of 6 steps" in question.question


async def test_a_message_while_an_approval_is_pending_is_not_routed(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    h = make_crew(fake_redis)
    await h.say("/deploy api 1.4.3 production")
    await h.say("/restart api staging")  # recorded for deploybot; the approval still holds the thread
    events = await thread_events(h)
    assert not [e for e in events if isinstance(e, ev.HandedOff)]
    assert (await h.wiring.store.list_threads())[0].status == "awaiting_approval"


async def test_each_agent_asks_claude_with_its_own_prompt_and_tools(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    """Through the real SDK: the router's request, then the incident agent's, each with its prompt and tools."""
    script = [
        tool_use("hand_to_incident", {"note": "api in production answers 500s"}, text="An outage."),
        tool_use("health", {"service": "api", "environment": "production"}),
        tool_use("reply", {"message": "api is healthy again."}),
    ]
    prompts = PromptLibrary(resources.prompts_dir())
    async with FakeAnthropic(script) as fake, anthropic.AsyncAnthropic(api_key="t", base_url=fake.base_url) as client:
        models = {name: AnthropicModel(client, prompts, model=MODEL, agent=name) for name in ("router", "incident")}
        h = make_crew(fake_redis, models)
        await h.say("api is throwing 500s in prod")

    systems = [body["system"][0]["text"] for body in fake.requests]
    assert systems == [prompts.render(name, agent_name=name).text for name in ("router", "incident", "incident")]
    tools = [sorted(tool["name"] for tool in body["tools"]) for body in fake.requests]
    assert tools[0] == ["ask_human", "hand_to_deploybot", "hand_to_incident", "hand_to_status", "reply"]
    assert tools[1] == [
        "ask_human",
        "check_url",
        "hand_to_deploybot",
        "hand_to_status",
        "health",
        "history",
        "reply",
        "restart",
        "rollback",
        "status",
    ]
    seen = json.dumps(fake.requests[1]["messages"])
    assert "api is throwing 500s in prod" in seen and "api in production answers 500s" in seen
    assert "tool_use" not in seen, "the router's hand_to call is shown as a note, not as a call of a tool it lacks"
    calls = [e for e in await thread_events(h) if isinstance(e, ev.ModelCall)]
    assert [c.prompt_name for c in calls] == ["router", "incident", "incident"]
    assert await replies(h) == ["api is healthy again."]


@pytest.mark.parametrize("text", ["help", "/help", "/ops", "/ops help"])
async def test_help_lists_the_commands_without_the_router_or_any_model(
    fake_redis: aioredis.Redis, make_crew: MakeCrew, text: str
) -> None:
    router, deploybot = ScriptedModel([]), ScriptedModel([])
    h = make_crew(fake_redis, {"router": router, "deploybot": deploybot})

    await h.say(text)

    [answer] = await replies(h)
    assert (
        answer.startswith("Commands you can use (as <who:cli:operator>):")
        and "/status <service> <environment>" in answer
    )
    assert router.requests == [] and deploybot.requests == []


async def test_a_command_without_its_slash_runs_without_a_model_and_free_text_still_reaches_it(
    fake_redis: aioredis.Redis, make_crew: MakeCrew
) -> None:
    router, deploybot = ScriptedModel([]), ScriptedModel([call("reply", message="which environment?")])
    h = make_crew(fake_redis, {"router": router, "deploybot": deploybot})

    await h.say("status api staging")
    assert (await replies(h))[0].startswith("api in staging: 1.0.0")
    assert router.requests == [] and deploybot.requests == []

    await h.say("status of the api, please")  # starts with a command's name, but is not its arguments
    assert (await replies(h))[1:] == ["which environment?"]
    assert len(deploybot.requests) == 1 and router.requests == [], "the thread's agent reads its free text"
