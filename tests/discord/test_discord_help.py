"""Help on Discord never asks the model: `/ops request:help`, `@bot help` and a DM saying help."""

from __future__ import annotations

from tests.conftest import ScriptedModel
from tests.discord.conftest import REQUESTER, MakeScene
from tests.discord.fake_discord import CHANNEL, message_create, slash, text_channel


def is_help(text: str) -> bool:
    return "Commands you can use" in text and "/status <service> <environment>" in text


async def test_slash_ops_help_answers_the_command_list_without_the_model(make_scene: MakeScene) -> None:
    model = ScriptedModel([])  # any model request would fail: the script is empty
    scene = await make_scene(model)
    command = slash("ops", {"request": "help"}, who=REQUESTER, channel=text_channel())
    await scene.feed(command)
    [echo] = scene.fake.find("PATCH", r"/webhooks/999/[^/]+/messages/@original")
    [thread] = scene.fake.find("POST", rf"/channels/{CHANNEL}/messages/{echo.response['id']}/threads")
    assert thread.body["name"] == "help"
    [answer] = scene.fake.find("POST", rf"/channels/{echo.response['id']}/messages")
    assert is_help(answer.body["content"])
    assert model.requests == []


async def test_a_mention_or_a_dm_saying_help_answers_without_the_model(make_scene: MakeScene) -> None:
    model = ScriptedModel([])
    scene = await make_scene(model)
    mention = message_create("<@999> help", author=REQUESTER, mention=True)
    await scene.feed(mention)
    await scene.feed(message_create("help", author=REQUESTER, channel_id="4242", guild=False))
    [in_thread] = scene.fake.find("POST", rf"/channels/{mention['id']}/messages")
    [in_dm] = scene.fake.find("POST", r"/channels/4242/messages")
    assert is_help(in_thread.body["content"]) and is_help(in_dm.body["content"])
    assert model.requests == []


async def test_a_command_without_its_slash_runs_without_the_model(make_scene: MakeScene) -> None:
    model = ScriptedModel([])
    scene = await make_scene(model)
    await scene.feed(slash("ops", {"request": "status api staging"}, who=REQUESTER, channel=text_channel()))
    [echo] = scene.fake.find("PATCH", r"/webhooks/999/[^/]+/messages/@original")
    [answer] = scene.fake.find("POST", rf"/channels/{echo.response['id']}/messages")
    assert "api" in answer.body["content"] and "staging" in answer.body["content"]
    assert model.requests == []
