"""An MCP server's question during a call (elicitation) asked in the thread and answered from the channel.

The test server asks through the SDK's 2026-07-28 rounds (`InputRequiredResult`); the call waits in its
worker, which holds the thread, while the answer is taken by that worker's second lane (one worker is
all these tests run, as `bot run` has).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.domain import events as ev
from core.domain import people
from core.domain.events import MessageTrigger
from core.domain.ids import new_id
from tests.conftest import Harness, ScriptedModel, call
from tests.eventually import eventually
from tests.mcp.servers.harness import SECRET, stdio_server, tools_file


@pytest.fixture
async def started(redis_client, make_harness, tmp_path: Path) -> AsyncIterator[Callable[..., Harness]]:
    harnesses: list[Harness] = []

    async def start(model: ScriptedModel, extra: str = "") -> Harness:
        path = tools_file(tmp_path, stdio_server(extra=extra))
        h = make_harness(redis_client, model, BOT_TOOLS_FILE=str(path), OPS_MCP_CRED=SECRET)
        harnesses.append(h)
        assert h.wiring.mcp is not None
        await h.wiring.mcp.start()
        return h

    yield start  # type: ignore[misc]
    for h in harnesses:
        assert h.wiring.mcp is not None
        await h.wiring.mcp.aclose()


@contextlib.asynccontextmanager
async def asking(h: Harness, text: str) -> AsyncIterator[asyncio.Task[None]]:
    """`text` is being handled by one worker (its call waits for the person); yields that work."""
    work = asyncio.create_task(h.say(text))
    try:
        yield work
    finally:
        if not work.done():
            work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work


async def question(h: Harness) -> ev.Question:
    async def asked() -> ev.Question | None:
        return next((o for o in reversed(await h.outbox()) if isinstance(o, ev.Question) and o.call_id), None)

    found = await eventually(asked, "the server's question in the thread's channel")
    assert found is not None
    return found


async def answer(h: Harness, text: str, sender: str = "cli:operator", answers: str = "") -> None:
    """The person's reply, into the inbox (the worker's second lane takes it while the call waits)."""
    trigger = MessageTrigger(
        id=new_id(), channel="cli", conversation=h.conversation, sender=sender, text=text, answers=answers
    )
    await h.wiring.bus.publish(trigger)


async def notices(h: Harness, to: str) -> list[str]:
    return [o.text for o in await h.outbox() if isinstance(o, ev.Notice) and o.to == to]


async def told(h: Harness, to: str, count: int) -> str:
    """The `count`th notice to `to`, once it is there."""
    seen = await eventually(lambda: _nth(h, to, count), f"notice {count} to {to}")
    return seen


async def _nth(h: Harness, to: str, count: int) -> str:
    said = await notices(h, to)
    return said[count - 1] if len(said) >= count else ""


async def events(h: Harness) -> list[ev.Event]:
    thread = (await h.wiring.store.list_threads())[0]
    return await h.wiring.store.load_events(thread.thread_id)


async def test_a_form_is_asked_in_the_thread_and_the_typed_answer_reaches_the_server(started) -> None:
    model = ScriptedModel([call("ops__rollout", service="api"), call("reply", message="done")])
    h = await started(model)
    async with asking(h, "roll out api") as work:
        asked = await question(h)
        assert asked.question.startswith(
            "MCP server ops asks, for ops__rollout: Which version of api should I roll out?"
        )
        assert "• version (string, required): the version to roll out, like 2.4.1" in asked.question
        assert "• canary (yes or no, optional, default no): first to one pod only" in asked.question
        assert asked.options == ["Decline", "Cancel"] and set(asked.form["properties"]) == {"version", "canary"}
        await answer(h, "version: 2.4.1\ncanary = yes")
        await work
    result = [e for e in await events(h) if isinstance(e, ev.ToolResult)][-1]
    assert result.output == "rolled out api 2.4.1 (canary: True)"
    said = [e for e in await events(h) if isinstance(e, ev.ServerAsked | ev.ServerAnswered)]
    assert [e.type for e in said] == ["server_asked", "server_answered"]
    assert said[0].fields == ["version", "canary"] and said[1].actor == "cli:operator"
    assert isinstance(said[1], ev.ServerAnswered) and said[1].content == {"version": "2.4.1", "canary": True}


async def test_an_answer_that_does_not_fit_is_sent_back_and_the_question_stays_open(started) -> None:
    model = ScriptedModel([call("ops__rollout", service="api"), call("reply", message="done")])
    h = await started(model)
    async with asking(h, "roll out api") as work:
        await question(h)
        await answer(h, "canary: maybe")
        assert await told(h, "cli:operator", 1) == (
            "that answer does not fit MCP server ops's form: canary: answer yes or no, not 'maybe'. "
            "Nothing was sent; answer again"
        )
        await answer(h, "canary: no")
        assert (await told(h, "cli:operator", 2)).startswith(
            "that answer does not fit MCP server ops's form: missing version"
        )
        await answer(h, "version: 2.5.0")
        await work
    assert [e for e in await events(h) if isinstance(e, ev.ToolResult)][
        -1
    ].output == "rolled out api 2.5.0 (canary: False)"


async def test_only_the_person_asked_answers_and_a_decline_click_reaches_the_server(started) -> None:
    model = ScriptedModel([call("ops__rollout", service="api"), call("reply", message="declined")])
    h = await started(model)
    async with asking(h, "roll out api") as work:
        asked = await question(h)
        await answer(h, "Decline", sender="cli:mallory", answers=asked.call_id)
        assert (
            await told(h, "cli:mallory", 1)
            == f"this question is for {people.who('cli:operator')} to answer; nothing changed"
        )
        await answer(h, "Decline", answers=asked.call_id)
        await work
    assert [e for e in await events(h) if isinstance(e, ev.ToolResult)][-1].output == (
        "rollout of api not done: the person chose decline"
    )
    await answer(h, "Decline", answers=asked.call_id)  # a second click, after the call ended
    await h.drain()
    assert (
        await told(h, "cli:operator", 1) == "that question was already answered; nothing changed. Write here to go on"
    )


async def test_a_form_asking_for_a_secret_is_declined_without_asking(started) -> None:
    model = ScriptedModel([call("ops__rotate_key", service="api"), call("reply", message="not rotated")])
    h = await started(model)
    await h.say("rotate the api key")
    outbox = await h.outbox()
    assert not [o for o in outbox if isinstance(o, ev.Question)]
    warning = next(o.text for o in outbox if isinstance(o, ev.Notice))
    assert warning.startswith(
        "MCP server ops asked something for ops__rotate_key that I will not ask you: its field 'api_key' asks for a secret"
    )
    assert [e for e in await events(h) if isinstance(e, ev.ToolResult)][-1].output == "key of api not rotated: decline"


async def test_url_mode_names_the_domain_and_opened_accepts(started) -> None:
    model = ScriptedModel([call("ops__login"), call("reply", message="signed in")])
    h = await started(model)
    async with asking(h, "log in") as work:
        asked = await question(h)
        assert asked.link == "https://sso.example.com/device?code=ABCD" and asked.options == [
            "Opened",
            "Decline",
            "Cancel",
        ]
        assert "open a page on sso.example.com: https://sso.example.com/device?code=ABCD" in asked.question
        await answer(h, "opened")
        await work
    assert [e for e in await events(h) if isinstance(e, ev.ToolResult)][-1].output == "login: accept"


async def test_an_unanswered_question_times_out_into_a_clear_tool_error(started) -> None:
    model = ScriptedModel([call("ops__rollout", service="api"), call("reply", message="timed out")])
    h = await started(model, extra="ask_timeout = 0.5\n")
    await h.say("roll out api")
    error = [e for e in await events(h) if isinstance(e, ev.ToolErrorEvent)][-1]
    assert error.kind == "failed" and error.error == (
        "ops__rollout: MCP server ops asked a question and nobody answered its question within 0.5s (ask_timeout), "
        "so it was cancelled; the server answered: rollout of api not done: the person chose cancel"
    )
    answered = [e for e in await events(h) if isinstance(e, ev.ServerAnswered)][-1]
    assert answered.action == "cancel" and answered.actor == "system"


async def test_a_2025_era_connection_asks_by_elicitation_create_during_the_call(started) -> None:
    """`protocol = "legacy"`: the server's question is a request of its own, read by the connection's task."""
    model = ScriptedModel([call("ops__rollout", service="web"), call("reply", message="done")])
    h = await started(model, extra='protocol = "legacy"\n')
    async with asking(h, "roll out web") as work:
        await question(h)
        await answer(h, "version: 1.0.0")
        await work
    assert h.wiring.mcp is not None
    session = h.wiring.mcp.connections["ops"]._client
    assert session is not None and session.protocol_version == "2025-11-25"
    result = [e for e in await events(h) if isinstance(e, ev.ToolResult)][-1]
    assert result.output == "rolled out web 1.0.0 (canary: False)"
