"""The `slack` outbox: long replies, the progress message, questions, and Slack's rate limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.slack.blocks import MESSAGE_CHARS, split_text
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


async def test_progress_without_slacks_status_edits_one_message(slack: SlackKit) -> None:
    """Where Slack refuses the assistant status, the progress is one message, edited, removed at the end."""
    slack.fake.refuse("assistant.threads.setStatus", "missing_scope")
    slack.fake.refuse("chat.startStream", "missing_scope")
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


async def test_a_rate_limit_is_a_channel_error_with_slacks_retry_after(slack: SlackKit) -> None:
    """No sleeping inside the SDK: delivery waits Retry-After while other conversations go on."""
    slack.fake.rate_limit("chat.postMessage", retry_after=7)
    reply = outbound(Reply, text="hello")
    with pytest.raises(ChannelError, match="rate-limited") as limited:
        await slack.channel.render(reply)
    assert limited.value.retry_after == 7
    await slack.channel.render(reply)  # the retry looks for the first attempt's post, finds none, posts
    assert [m["text"] for m in slack.fake.messages] == ["hello"]
    assert len(slack.fake.called("conversations.replies")) == 1


async def test_a_message_rendered_again_after_a_crash_is_not_posted_twice(slack: SlackKit) -> None:
    """A renderer that died after Slack's answer and before its record: the next one finds the post."""
    reply = outbound(Reply, text="deployed api 1.4.2")
    await slack.channel.render(reply)
    await slack.channel.render(reply)  # as the renderer that takes the entry over does
    assert [m["text"] for m in slack.fake.messages] == ["deployed api 1.4.2"]
    (posted,) = slack.fake.called("chat.postMessage")
    assert posted.args["metadata"]["event_payload"]["outbound_id"] == f"{reply.id}:0"


async def test_a_long_reply_cut_short_by_a_crash_posts_only_its_missing_parts(slack: SlackKit) -> None:
    lines = [f"{n:05d} " + "x" * 94 for n in range(100)]
    reply = outbound(Reply, text="\n".join(lines))
    await slack.channel.render(reply)
    third = slack.fake.messages.pop()  # as if the renderer died before posting the last part
    await slack.channel.render(reply)
    assert len(slack.fake.messages) == 3 and slack.fake.messages[-1]["text"] == third["text"]
    assert "\n".join(m["text"] for m in slack.fake.messages) == "\n".join(lines)
    assert len(slack.fake.called("chat.postMessage")) == 4


async def test_two_renderers_open_a_slash_commands_thread_once(make_slack: MakeSlack) -> None:
    first, second = await make_slack(serve=False), await make_slack(serve=False)
    command = {"slack_team": "T1", "slack_channel": "C1", "slack_user": "U1", "slack_command": "/ops status api"}
    replies = [
        Reply(id=new_id(), channel="slack", conversation="T1/C1/cmd-1", thread_id="t1", reply_to=command, text=text)
        for text in ("checking api", "api is healthy")
    ]
    results = await asyncio.gather(
        first.channel.render(replies[0]), second.channel.render(replies[1]), return_exceptions=True
    )
    for result, reply in zip(results, replies, strict=True):
        if isinstance(result, ChannelError):  # the other renderer held the opening: retried, as delivery does
            assert result.retry_after == 1.0 and "another renderer is opening" in str(result)
            await first.channel.render(reply)
        else:
            assert result is None
    openers = [m for m in first.fake.messages if "used `/ops status api`" in m["text"]]
    assert len(openers) == 1
    answers = [m for m in first.fake.messages if m["thread_ts"] == openers[0]["ts"]]
    assert sorted(m["text"] for m in answers) == ["api is healthy", "checking api"]


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
    assert (direct.args["channel"], direct.args["text"]) == ("U9", ":warning: you may not do that")
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
