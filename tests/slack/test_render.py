"""The `slack` outbox: long replies, the progress message, questions, and Slack's rate limit."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.slack_blocks import MESSAGE_CHARS, split_text
from core import ChannelError, Notice, Outbound, Reply, new_id
from tests.conftest import ScriptedModel, call
from tests.slack.conftest import MakeSlack, SlackKit
from tests.slack.fake_slack import BOT_USER

THREAD = {"slack_team": "T1", "slack_channel": "C1", "slack_thread_ts": "1700000001.000100", "slack_user": "U1"}


@pytest.fixture
async def slack(make_slack: MakeSlack) -> SlackKit:
    """The renderer on its own: no HTTP server."""
    return await make_slack(serve=False)


def outbound(kind: type[Reply | Notice], **fields: Any) -> Outbound:
    return kind(
        id=new_id(), channel="slack", conversation="T1/C1/1700000001.000100", thread_id="t1", reply_to=THREAD, **fields
    )


async def test_long_reply_is_split_at_slack_limits(slack: SlackKit) -> None:
    lines = [f"{n:05d} " + "x" * 94 for n in range(100)]  # 10,000 characters
    await slack.channel.render(outbound(Reply, text="\n".join(lines)))
    posts = slack.fake.called("chat.postMessage", thread_ts="1700000001.000100")
    assert len(posts) == 3 and all(len(p.args["text"]) <= MESSAGE_CHARS for p in posts)
    assert "\n".join(p.args["text"] for p in posts) == "\n".join(lines)


async def test_very_long_reply_is_uploaded_as_a_file(slack: SlackKit) -> None:
    text = "\n".join("y" * 99 for _ in range(400))  # 40,000 characters
    await slack.channel.render(outbound(Reply, text=text))
    assert slack.fake.called("chat.postMessage") == []
    (upload,) = slack.fake.called("upload")
    assert upload.args["size"] == len(text)
    (done,) = slack.fake.called("files.completeUploadExternal")
    assert done.args["channel_id"] == "C1" and done.args["thread_ts"] == "1700000001.000100"


def test_split_text_never_cuts_an_escape_in_two() -> None:
    pieces = split_text("a" * 8 + "<" * 10, limit=10)
    assert all(len(p) <= 10 for p in pieces) and "".join(pieces) == "a" * 8 + "&lt;" * 10
    assert all(not p.endswith(("&", "&l", "&lt")) for p in pieces)


async def test_progress_edits_one_status_message(slack: SlackKit) -> None:
    for step in ("checking api", "running tests", "deploying"):
        await slack.channel.render(outbound(Reply, text=step, final=False))
    (status,) = slack.fake.called("chat.postMessage")
    edits = slack.fake.called("chat.update", ts=status.result["ts"])
    assert [e.args["text"] for e in edits] == [
        ":hourglass_flowing_sand: running tests",
        ":hourglass_flowing_sand: deploying",
    ]
    await slack.channel.render(outbound(Reply, text="done: api 1.4.2 is live"))
    assert slack.fake.called("chat.delete", ts=status.result["ts"])
    assert slack.fake.called("chat.postMessage")[-1].args["text"] == "done: api 1.4.2 is live"
    await slack.channel.render(outbound(Reply, text="next request", final=False))
    assert len(slack.fake.called("chat.postMessage")) == 3  # a new status message for the next piece of work


async def test_rate_limited_call_is_retried_after_retry_after(slack: SlackKit) -> None:
    slack.fake.rate_limit("chat.postMessage", retry_after=1)
    await slack.channel.render(outbound(Reply, text="hello"))
    limited, sent = slack.fake.called("chat.postMessage")
    assert limited.result == {} and sent.result["ok"]
    assert sent.at - limited.at >= 1.0


async def test_notice_for_one_person_is_ephemeral_or_else_a_direct_message(slack: SlackKit) -> None:
    notice = outbound(Notice, text="you may not do that", to="slack:T1:U9", level="warning")
    await slack.channel.render(notice)
    (ephemeral,) = slack.fake.called("chat.postEphemeral")
    assert ephemeral.args == {
        "channel": "C1",
        "user": "U9",
        "text": ":warning: you may not do that",
        "thread_ts": "1700000001.000100",
    }
    slack.fake.refuse("chat.postEphemeral", "user_not_in_channel")
    await slack.channel.render(notice)
    (direct,) = slack.fake.called("chat.postMessage")
    assert direct.args == {"channel": "U9", "text": ":warning: you may not do that"}
    assert slack.fake.called("chat.postMessage", channel="C1") == []


async def test_a_refusal_from_slack_is_a_channel_error_naming_the_fix(slack: SlackKit) -> None:
    slack.fake.refuse("chat.postMessage", "not_in_channel")
    with pytest.raises(ChannelError, match="not_in_channel; check the bot's scopes and that it is a member"):
        await slack.channel.render(outbound(Reply, text="hello"))


async def test_question_is_asked_in_the_thread_and_a_plain_reply_answers_it(make_slack: MakeSlack) -> None:
    model = ScriptedModel([call("ask_human", question="Which environment?")])
    slack = await make_slack(model=model)
    # A mention inside someone else's thread: the bot answers there but does not follow all of it...
    human_thread = "1699999999.000001"
    mention = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{BOT_USER}> deploy api",
        "ts": "1700000001.000100",
        "thread_ts": human_thread,
        "channel": "C1",
    }
    await slack.event(mention)
    await slack.settle(lambda: bool(slack.fake.called("chat.postMessage")))
    (question,) = slack.fake.called("chat.postMessage")
    assert question.args["thread_ts"] == human_thread and question.args["text"].startswith(
        ":question: Which environment?"
    )
    # ...until it asks a question there: then the next reply, without a mention, is the answer.
    assert isinstance(model.script, list)
    model.script.append(call("reply", message="staging it is"))
    reply = {
        "type": "message",
        "user": "U1",
        "text": "staging",
        "ts": "1700000002.000200",
        "thread_ts": human_thread,
        "channel": "C1",
        "channel_type": "channel",
    }
    await slack.event(reply)
    await slack.settle(lambda: len(slack.fake.called("chat.postMessage")) == 2)
    assert slack.fake.called("chat.postMessage")[-1].args["text"] == "staging it is"
    assert model.requests[-1].state.last_user_text == "staging"
