"""Help and commands through Slack with a language model configured: none of them asks the model."""

from __future__ import annotations

import pytest

from tests.conftest import ScriptedModel, call
from tests.slack.conftest import MakeSlack
from tests.slack.fake_slack import BOT_USER
from tests.slack.test_messages import message


@pytest.mark.parametrize(("command", "text"), [("/ops", "help"), ("/ops", ""), ("/ops", "/help")])
async def test_ops_help_answers_the_command_list_without_the_model(
    make_slack: MakeSlack, command: str, text: str
) -> None:
    model = ScriptedModel([])
    slack = await make_slack(model=model)

    status, _ = await slack.command(command, text)

    assert status == 200
    await slack.settle(lambda: len(slack.fake.posts()) == 2)
    answer = slack.fake.posts()[-1].args["text"]
    assert "Commands you can use (as <@U1>)" in answer and "/status &lt;service&gt; &lt;environment&gt;" in answer
    assert model.requests == []


async def test_a_mention_or_a_dm_saying_help_answers_the_command_list_without_the_model(make_slack: MakeSlack) -> None:
    model = ScriptedModel([])
    slack = await make_slack(model=model)

    await slack.event(message(f"<@{BOT_USER}> help", kind="app_mention"))
    await slack.event(message("help", "1700000009.000900", channel="D1", channel_type="im"))

    await slack.settle(lambda: len(slack.fake.posts()) == 2)
    assert all("Commands you can use" in post.args["text"] for post in slack.fake.posts())
    assert model.requests == []


async def test_ops_with_a_command_without_its_slash_runs_it_and_free_text_reaches_the_model(
    make_slack: MakeSlack,
) -> None:
    model = ScriptedModel([call("reply", message="which environment?")])
    slack = await make_slack(model=model)

    await slack.command("/ops", "status api staging")
    await slack.settle(lambda: len(slack.fake.answers()) == 2)
    assert "api in staging" in slack.fake.answers()[-1]["text"] and model.requests == []

    await slack.command("/ops", "status of api, please")
    await slack.settle(lambda: len(slack.fake.answers()) == 4)
    assert slack.fake.answers()[-1]["text"] == "which environment?" and len(model.requests) == 1
