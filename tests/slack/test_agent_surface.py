"""Slack's agent surface: the thread's status while tools run, answers streamed with their steps, the
assistant thread (prompts, title, the channel viewed), and the fallback when Slack refuses them."""

from __future__ import annotations

from typing import Any

import pytest

from core import ChannelError, Reply, new_id
from core.model.context import render
from tests.slack.conftest import MakeSlack, SlackKit
from tests.slack.fake_slack import BOT_USER, STATUS, TEAM
from tests.slack.test_messages import ROOT, mention

THREAD = {"slack_team": "T1", "slack_channel": "C1", "slack_thread_ts": ROOT, "slack_user": "U1"}


def reply(text: str, final: bool = True, reply_id: str | None = None) -> Reply:
    return Reply(
        id=reply_id or new_id(),
        channel="slack",
        conversation=f"T1/C1/{ROOT}",
        thread_id="t1",
        reply_to=THREAD,
        text=text,
        final=final,
    )


@pytest.fixture
async def renderer(make_slack: MakeSlack) -> SlackKit:
    return await make_slack(serve=False)


async def test_a_tool_run_shows_as_status_and_the_answer_streams_with_its_steps(slack: SlackKit) -> None:
    await slack.event(mention("/status api staging"))
    await slack.settle(lambda: bool(slack.fake.called("chat.stopStream")))
    assert slack.fake.status_calls() == [("C1", ROOT, "running status…"), ("C1", ROOT, "")]
    (start,) = slack.fake.called("chat.startStream")
    assert start.args["thread_ts"] == ROOT and start.args["task_display_mode"] == "timeline"
    assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == (TEAM, "U1"), "a channel: for whom"
    assert [(c["title"], c["status"]) for c in start.args["chunks"]] == [("running status…", "complete")]
    assert not any(c["type"] == "markdown_text" for c in start.args["chunks"]), "no answer before its ts is kept"
    (answer,) = slack.fake.answers()
    assert "api in staging" in answer["text"] and answer["thread_ts"] == ROOT and not answer["streaming"]
    assert answer["metadata"]["event_type"] == "opsbot_outbound", "marked when stopped, so a retry finds it"
    assert slack.fake.posts() == [] and slack.fake.deleted() == []


async def test_an_answer_without_steps_is_posted(slack: SlackKit) -> None:
    await slack.event(mention("help"))
    await slack.settle(lambda: bool(slack.fake.posts()))
    assert slack.fake.called("chat.startStream") == [] and slack.fake.status_calls() == []


@pytest.mark.parametrize("error", ["not_allowed_token_type", "missing_scope", "unknown_method"])
async def test_refused_status_and_stream_fall_back_and_are_not_asked_again(make_slack: MakeSlack, error: str) -> None:
    slack = await make_slack()
    slack.fake.refuse("assistant.threads.setStatus", error)
    slack.fake.refuse("chat.startStream", error)
    await slack.event(mention("/status api staging"))
    await slack.settle(lambda: len(slack.fake.posts()) == 1)
    # Today's behaviour: one progress message, deleted when the answer is posted.
    (progress,) = slack.fake.statuses()
    assert progress.args["text"] == f"{STATUS}running status…" and progress.args["thread_ts"] == ROOT
    assert slack.fake.deleted() == [("C1", progress.result["ts"])]
    assert "api in staging" in slack.fake.posts()[0].args["text"]
    redis = slack.harness.wiring.store.redis
    assert await redis.get("slack:refused:status:channel") == error.encode()
    assert await redis.get("slack:refused:stream:channel") == error.encode()
    # Remembered in Redis: a second run (by any process) does not ask Slack again.
    other = "1700000005.000500"
    await slack.event(mention("/status web staging", other))
    await slack.settle(lambda: len(slack.fake.posts()) == 2)
    assert len(slack.fake.called("assistant.threads.setStatus")) == 1
    assert len(slack.fake.called("chat.startStream")) == 1
    assert len(slack.fake.statuses()) == 2 and "web in staging" in slack.fake.posts()[1].args["text"]
    # A refusal in channels says nothing about direct messages.
    assert await redis.get("slack:refused:status:im") is None


async def test_a_stream_started_by_a_renderer_that_died_is_finished_not_repeated(renderer: SlackKit) -> None:
    await renderer.channel.render(reply("running status…", final=False))
    answer = reply("api 1.4.2 is live in staging")
    renderer.fake.rate_limit("chat.appendStream", retry_after=2)  # the stream began, then the renderer stopped
    with pytest.raises(ChannelError, match="rate-limited"):
        await renderer.channel.render(answer)
    await renderer.channel.render(answer)  # the renderer that takes the entry over
    assert len(renderer.fake.called("chat.startStream")) == 1
    (shown,) = renderer.fake.answers()
    assert shown["text"] == "api 1.4.2 is live in staging" and not shown["streaming"]
    assert shown["metadata"]["event_payload"]["outbound_id"] == f"{answer.id}:0"
    await renderer.channel.render(answer)  # once more, after it was finished: found by its mark
    assert len(renderer.fake.answers()) == 1 and len(renderer.fake.called("chat.update")) == 1


async def test_a_stream_that_finished_before_its_renderer_died_is_found(renderer: SlackKit) -> None:
    await renderer.channel.render(reply("running status…", final=False))
    answer = reply("api is healthy")
    await renderer.channel.render(answer)
    await renderer.channel.render(answer)  # redelivered: the record of the first delivery was lost
    assert len(renderer.fake.called("chat.startStream")) == 1 and len(renderer.fake.answers()) == 1


async def test_progress_status_counts_a_redelivered_note_once(renderer: SlackKit) -> None:
    note = reply("running deploy…", final=False)
    await renderer.channel.render(note)
    await renderer.channel.render(note)
    await renderer.channel.render(reply("running health…", final=False))
    await renderer.channel.render(reply("deployed and healthy"))
    (start,) = renderer.fake.called("chat.startStream")
    assert [c["title"] for c in start.args["chunks"]] == ["running deploy…", "running health…"]
    assert renderer.fake.status_calls()[-1] == ("C1", ROOT, "")


def assistant_event(kind: str, viewing: str, thread_ts: str = ROOT) -> dict[str, Any]:
    thread = {"user_id": "U1", "channel_id": "D1", "thread_ts": thread_ts, "context": {"channel_id": viewing}}
    return {"type": kind, "assistant_thread": thread, "event_ts": "1700000001.000200"}


def in_assistant_thread(text: str, ts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "user": "U1",
        "text": text,
        "ts": ts,
        "thread_ts": ROOT,
        "channel": "D1",
        "channel_type": "im",
    }


async def test_assistant_thread_prompts_title_and_viewed_channel(slack: SlackKit) -> None:
    assert await slack.event(assistant_event("assistant_thread_started", "CVIEW1")) == 200
    (prompts,) = slack.fake.called("assistant.threads.setSuggestedPrompts")
    assert prompts.args["channel_id"] == "D1" and prompts.args["thread_ts"] == ROOT
    offered = [p["message"] for p in prompts.args["prompts"]]
    assert offered[0] == "help" and "/list-services" in offered and len(offered) <= 4
    assert all(p["title"] for p in prompts.args["prompts"])

    await slack.event(assistant_event("assistant_thread_context_changed", "CVIEW2"))
    await slack.event(in_assistant_thread("/status api staging", "1700000002.000200"))
    await slack.settle(lambda: bool(slack.fake.called("chat.stopStream")))
    await slack.event(in_assistant_thread("/status web staging", "1700000003.000300"))
    await slack.settle(lambda: len(slack.fake.called("chat.stopStream")) == 2)

    (started,) = [e for e in await slack.events() if e.type == "thread_started"]
    assert started.reply_to["slack_viewing"] == "CVIEW2", "the channel viewed goes with the request"
    said = [e for e in await slack.events() if e.type == "user_message"]
    assert [e.context for e in said] == [{"viewing": "<#CVIEW2>"}] * 2, "each message says what was open beside it"
    messages = render(await slack.events(), set(), 10_000)
    model_sees = [b["text"] for m in messages for b in m["content"] if b.get("text", "").startswith("<user_message")]
    assert model_sees[-1].startswith('<user_message viewing="&lt;#CVIEW2&gt;" sender="&lt;@U1&gt;">')
    (title,) = slack.fake.called("assistant.threads.setTitle")
    assert (title.args["channel_id"], title.args["thread_ts"], title.args["title"]) == (
        "D1",
        ROOT,
        "/status api staging",
    )
    assert [m["thread_ts"] for m in slack.fake.answers()] == [ROOT, ROOT], "answered in the assistant thread"
    (start, _) = slack.fake.called("chat.startStream")
    assert "recipient_user_id" not in start.args, "a direct message needs no recipient"


async def test_assistant_thread_without_the_feature_still_answers(slack: SlackKit) -> None:
    slack.fake.refuse("assistant.threads.setSuggestedPrompts", "not_allowed_token_type")
    assert await slack.event(assistant_event("assistant_thread_started", "")) == 200
    slack.fake.refuse("assistant.threads.setTitle", "missing_scope")
    await slack.event(in_assistant_thread(f"<@{BOT_USER}> help", "1700000002.000200"))
    await slack.settle(lambda: bool(slack.fake.posts()))
    assert "Commands you can use" in slack.fake.posts()[0].args["text"]
