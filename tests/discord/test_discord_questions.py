"""Questions with choices: buttons or a menu; a click answers with the option's text, once, by whom it asks."""

from __future__ import annotations

from typing import Any

from core.domain import events as ev
from tests.conftest import ScriptedModel, call
from tests.discord.conftest import OUTSIDER, REQUESTER, MakeScene, Scene
from tests.discord.fake_discord import click, message_create, select, thread_channel

ENVIRONMENTS = ["staging", "production"]
MANY = [f"region-{n}" for n in range(1, 8)]


async def asked(make_scene: MakeScene, options: list[str]) -> tuple[Scene, ScriptedModel, dict[str, Any]]:
    """Dana asks in #ops; the model asks back with `options`; returns the question message."""
    model = ScriptedModel([call("ask_human", question="Which environment?", options=options)])
    scene = await make_scene(model)
    mention = message_create("<@999> restart api", author=REQUESTER, mention=True)
    await scene.feed(mention)
    [question] = [c.response for c in scene.fake.find("POST", rf"/channels/{mention['id']}/messages")]
    return scene, model, question


async def answers(scene: Scene) -> list[ev.HumanAnswer]:
    [thread] = await scene.threads()
    return [e for e in await scene.events(thread) if isinstance(e, ev.HumanAnswer)]


async def test_a_question_with_options_shows_a_button_each_and_a_click_answers_it(make_scene: MakeScene) -> None:
    scene, model, question = await asked(make_scene, ENVIRONMENTS)
    assert question["content"].startswith("**Question:** Which environment?")
    assert "Choose one, or answer by mentioning me here." in question["content"]
    [row] = question["components"]
    buttons = row["components"]
    assert [b["label"] for b in buttons] == ENVIRONMENTS
    assert all(b["custom_id"].startswith("ask:") for b in buttons) and len({b["custom_id"] for b in buttons}) == 2

    model.script += [call("reply", message="restarting api in production")]
    press = click(question, buttons[1]["custom_id"], who=REQUESTER, channel=thread_channel(question["channel_id"]))
    await scene.feed(press)
    [ack] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert ack.body["type"] == 6  # deferred update: the answer shows as the thread going on
    [answer] = await answers(scene)
    assert (answer.text, answer.choice) == ("production", "production")
    replies = [c.body["content"] for c in scene.fake.find("POST", rf"/channels/{question['channel_id']}/messages")]
    assert replies[-1] == "restarting api in production"


async def test_many_options_are_a_select_menu(make_scene: MakeScene) -> None:
    scene, model, question = await asked(make_scene, MANY)
    [row] = question["components"]
    [menu] = row["components"]
    assert menu["type"] == 3 and [o["label"] for o in menu["options"]] == MANY
    model.script += [call("reply", message="ok")]
    where = thread_channel(question["channel_id"])
    await scene.feed(select(question, menu["custom_id"], ["4"], who=REQUESTER, channel=where))
    [answer] = await answers(scene)
    assert answer.choice == "region-5"


async def test_a_click_by_someone_else_or_twice_is_refused_only_to_the_clicker(make_scene: MakeScene) -> None:
    scene, model, question = await asked(make_scene, ENVIRONMENTS)
    where = thread_channel(question["channel_id"])
    [first, _] = [b["custom_id"] for b in question["components"][0]["components"]]
    stranger = click(question, first, who=OUTSIDER, channel=where)
    await scene.feed(stranger)
    [note] = scene.fake.find("POST", rf"/webhooks/999/{stranger['token']}")
    assert note.body["flags"] == 64 and "this question is for <@222> to answer" in note.body["content"]
    assert await answers(scene) == []

    model.script += [call("reply", message="ok")]
    await scene.feed(click(question, first, who=REQUESTER, channel=where))
    late = click(question, first, who=REQUESTER, channel=where)
    await scene.feed(late)
    [again] = scene.fake.find("POST", rf"/webhooks/999/{late['token']}")
    assert again.body["flags"] == 64 and "already answered" in again.body["content"]
    assert [a.choice for a in await answers(scene)] == ["staging"]


async def test_a_question_without_options_is_answered_in_writing(make_scene: MakeScene) -> None:
    model = ScriptedModel([call("ask_human", question="Which environment?")])
    scene = await make_scene(model)
    await scene.feed(message_create("restart api", author=REQUESTER, channel_id="4242", guild=False))
    [question] = scene.fake.find("POST", r"/channels/4242/messages")
    assert question.body["content"] == "**Question:** Which environment?\n-# Answer here."
    assert not question.body.get("components")
