"""An MCP server's question during a call, on Discord: its Decline and Cancel are buttons, its page a link button."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.domain import events as ev
from tests.conftest import ScriptedModel, call
from tests.discord.conftest import REQUESTER, MakeScene, Scene
from tests.discord.fake_discord import click, message_create, thread_channel
from tests.eventually import eventually
from tests.mcp.servers.harness import SECRET, stdio_server, tools_file


@pytest.fixture
async def mcp_scene(make_scene: MakeScene, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Scene] = []

    async def start(model: ScriptedModel) -> Scene:
        path = tools_file(tmp_path, stdio_server())
        scene = await make_scene(model, BOT_TOOLS_FILE=str(path), OPS_MCP_CRED=SECRET)
        assert scene.harness.wiring.mcp is not None
        await scene.harness.wiring.mcp.start()
        started.append(scene)
        return scene

    yield start
    for scene in started:
        assert scene.harness.wiring.mcp is not None
        await scene.harness.wiring.mcp.aclose()


async def question_posted(scene: Scene, channel_id: str) -> dict[str, Any]:
    async def posted() -> dict[str, Any] | None:
        await scene.render()
        sent = [c.response for c in scene.fake.find("POST", rf"/channels/{channel_id}/messages")]
        return next((m for m in sent if "MCP server ops asks" in (m.get("content") or "")), None)

    found = await eventually(posted, "the server's question in the Discord thread")
    assert found is not None
    return found


async def test_a_server_question_is_declined_with_its_button(mcp_scene) -> None:
    model = ScriptedModel([call("ops__rollout", service="api"), call("reply", message="not rolled out")])
    scene = await mcp_scene(model)
    mention = message_create("<@999> roll out api", author=REQUESTER, mention=True)
    handling = asyncio.create_task(scene.feed(mention))
    question = await question_posted(scene, mention["id"])
    assert question["content"].startswith("**Question:** MCP server ops asks, for ops__rollout: Which version of api")
    assert "• version (string, required)" in question["content"]
    buttons = question["components"][0]["components"]
    assert [b["label"] for b in buttons] == ["Decline", "Cancel"]

    press = click(question, buttons[0]["custom_id"], who=REQUESTER, channel=thread_channel(question["channel_id"]))
    await scene.feed(press)
    await handling
    [thread] = await scene.threads()
    events = await scene.events(thread)
    answered = next(e for e in events if isinstance(e, ev.ServerAnswered))
    assert (answered.action, answered.actor) == ("decline", f"discord:{REQUESTER['id']}")
    result = [e for e in events if isinstance(e, ev.ToolResult)][-1]
    assert result.output == "rollout of api not done: the person chose decline"
    await scene.render()
    replies = [c.body["content"] for c in scene.fake.find("POST", rf"/channels/{question['channel_id']}/messages")]
    assert replies[-1] == "not rolled out"


async def test_url_mode_is_a_link_button_naming_its_domain(mcp_scene) -> None:
    model = ScriptedModel([call("ops__login"), call("reply", message="signed in")])
    scene = await mcp_scene(model)
    mention = message_create("<@999> log in", author=REQUESTER, mention=True)
    handling = asyncio.create_task(scene.feed(mention))
    question = await question_posted(scene, mention["id"])
    buttons = question["components"][0]["components"]
    link = buttons[0]
    assert (link["style"], link["label"], link["url"]) == (
        5,
        "Open sso.example.com",
        "https://sso.example.com/device?code=ABCD",
    )
    assert [b["label"] for b in buttons[1:]] == ["Opened", "Decline", "Cancel"]
    press = click(question, buttons[1]["custom_id"], who=REQUESTER, channel=thread_channel(question["channel_id"]))
    await scene.feed(press)
    await handling
    [thread] = await scene.threads()
    assert [e for e in await scene.events(thread) if isinstance(e, ev.ToolResult)][-1].output == "login: accept"
