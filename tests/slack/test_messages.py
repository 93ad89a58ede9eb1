"""Mentions, direct messages, thread replies and slash commands, through the real HTTP endpoint."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.async_app import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from adapters.slack.inbound import Command, command_text, plain_text
from core import StoreUnavailable, ToolRegistry, Trigger
from core.domain import events as ev
from tests.slack.conftest import SECRET, MakeSlack, SlackKit, command_form
from tests.slack.fake_slack import BOT_USER

ROOT = "1700000001.000100"


def message(text: str, ts: str = ROOT, kind: str = "message", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "user": "U1", "text": text, "ts": ts, "channel": "C1", "channel_type": "channel", **extra}


def mention(text: str, ts: str = ROOT, **extra: Any) -> dict[str, Any]:
    return message(f"<@{BOT_USER}> {text}", ts, "app_mention", **extra)


async def user_texts(slack: SlackKit) -> list[str]:
    return [e.text for e in await slack.events() if isinstance(e, ev.UserMessage | ev.HumanAnswer)]


def progress_shown_as_status(slack: SlackKit, *threads: tuple[str, str], tool: str = "status") -> None:
    """Each tool run set its thread's status (no message that vanishes), and its answer cleared it."""
    expected = [call for channel, ts in threads for call in ((channel, ts, f"running {tool}…"), (channel, ts, ""))]
    assert slack.fake.status_calls() == expected
    assert slack.fake.statuses() == [] and slack.fake.deleted() == []


async def test_mention_is_answered_in_its_thread(slack: SlackKit) -> None:
    assert await slack.event(mention("help")) == 200
    await slack.settle(lambda: bool(slack.fake.called("chat.postMessage")))
    (reply,) = slack.fake.called("chat.postMessage")
    assert reply.args["channel"] == "C1" and reply.args["thread_ts"] == ROOT
    assert "Commands you can use (as <@U1>)" in reply.args["text"]
    assert "&lt;service&gt;" in reply.args["text"]  # the core's text is shown as written, not read as markup
    started = (await slack.events())[0]
    assert isinstance(started, ev.ThreadStarted) and started.conversation == f"T1/C1/{ROOT}"


async def test_retried_event_delivery_is_processed_once(slack: SlackKit) -> None:
    event = mention("/status api staging")
    assert await slack.event(event, event_id="Ev1") == 200
    assert await slack.event(event, event_id="Ev1", retry=1) == 200
    assert await slack.event(event, event_id="Ev1", retry=2) == 200
    await slack.received(3)
    await slack.settle(lambda: bool(slack.fake.answers()))
    assert slack.channel.stats == {"published": 1, "duplicate": 2}
    assert await user_texts(slack) == ["/status api staging"]
    assert len(slack.fake.answers()) == 1
    progress_shown_as_status(slack, ("C1", ROOT))


async def test_mention_arriving_also_as_message_is_processed_once(slack: SlackKit) -> None:
    await slack.event(mention("help"))
    await slack.received(1)
    reply = f"<@{BOT_USER}> /status api staging"  # a reply in the bot's thread that mentions it: two events
    await slack.event(message(reply, "1700000002.000200", thread_ts=ROOT), event_id="EvA")
    await slack.event(mention("/status api staging", "1700000002.000200", thread_ts=ROOT), event_id="EvB")
    await slack.received(3)
    await slack.settle(lambda: len(slack.fake.answers()) == 2)
    assert slack.channel.stats == {"published": 2, "duplicate": 1}
    assert await user_texts(slack) == ["help", "/status api staging"]
    assert len(slack.fake.answers()) == 2
    progress_shown_as_status(slack, ("C1", ROOT))


async def test_reply_in_the_bot_thread_continues_the_conversation(slack: SlackKit) -> None:
    await slack.event(mention("help"))
    await slack.event(message("/status api staging", "1700000003.000300", thread_ts=ROOT))
    await slack.received(2)
    await slack.settle(lambda: len(slack.fake.answers(thread_ts=ROOT)) == 2)
    assert await user_texts(slack) == ["help", "/status api staging"]
    assert "api in staging" in slack.fake.answers()[-1]["text"]
    assert len(slack.fake.answers()) == 2
    progress_shown_as_status(slack, ("C1", ROOT))


async def test_channel_talk_outside_the_bot_threads_is_ignored(slack: SlackKit) -> None:
    await slack.event(message("deploys are slow today"))
    await slack.event(message("agreed", "1700000004.000400", thread_ts="1699999999.000001"))
    await slack.event(message("edited", subtype="message_changed"))
    await slack.received(3)
    assert slack.channel.stats == {"ignored": 3}
    assert await slack.harness.wiring.store.list_threads() == []


def dm(text: str, ts: str, **extra: Any) -> dict[str, Any]:
    return message(text, ts, channel="D1", channel_type="im", **extra)


async def test_a_direct_message_conversation_is_one_thread_answered_inline(slack: SlackKit) -> None:
    """Three top-level DMs: one agent thread, each answered below it in the DM, not in a sub-thread."""
    for n, text in enumerate(["help", "/status api staging", "/status web staging"]):
        await slack.event(dm(text, f"170000001{n}.000100"))
        await slack.settle(lambda n=n: len(slack.fake.answers()) == n + 1, f"the answer to DM {n + 1}")
    assert len(await slack.harness.wiring.store.list_threads()) == 1
    assert await user_texts(slack) == ["help", "/status api staging", "/status web staging"]
    answers = slack.fake.called("chat.postMessage", channel="D1")
    assert all("thread_ts" not in post.args for post in answers), "inline, not in a thread"
    assert "api in staging" in slack.fake.answers()[1]["text"] and "web in staging" in slack.fake.answers()[2]["text"]
    # Without a thread Slack has no status to set: the progress is a message, removed when the answer lands.
    assert slack.fake.status_calls() == [] and len(slack.fake.deleted()) == 2
    assert [m["thread_ts"] for m in slack.fake.said()] == ["", "", ""]


async def test_a_reply_in_a_thread_of_a_direct_message_keeps_that_thread(slack: SlackKit) -> None:
    await slack.event(dm("help", ROOT))
    await slack.settle(lambda: len(slack.fake.answers()) == 1)
    await slack.event(dm("/status api staging", "1700000002.000200", thread_ts=ROOT))
    await slack.settle(lambda: len(slack.fake.answers()) == 2)
    in_thread = slack.fake.answers()[-1]
    assert in_thread["channel"] == "D1" and in_thread["thread_ts"] == ROOT and "api in staging" in in_thread["text"]
    assert len(await slack.harness.wiring.store.list_threads()) == 2
    progress_shown_as_status(slack, ("D1", ROOT))


async def test_slash_command_acks_then_answers_in_a_thread(slack: SlackKit) -> None:
    status, body = await slack.command("/ops", "status api staging")
    assert status == 200 and "Working on `/status api staging`" in body
    await slack.settle(lambda: len(slack.fake.answers()) == 2)
    (opener,) = slack.fake.posts()
    assert (opener.args["channel"], opener.args["text"]) == ("C1", "<@U1> used `/ops status api staging`")
    assert opener.args["metadata"]["event_type"] == "opsbot_outbound", "marked, so a retry finds it"
    root = opener.result["ts"]
    answer = slack.fake.answers()[-1]
    assert answer["thread_ts"] == root and "api in staging" in answer["text"]
    progress_shown_as_status(slack, ("C1", root))
    # A reply in the command's thread (no mention) continues the same conversation.
    await slack.event(message("/status web staging", "1700000009.000900", thread_ts=root))
    await slack.settle(lambda: len(slack.fake.answers(thread_ts=root)) == 2)
    assert await user_texts(slack) == ["/status api staging", "/status web staging"]
    assert len(slack.fake.answers()) == 3 and "web in staging" in slack.fake.answers()[-1]["text"]
    progress_shown_as_status(slack, ("C1", root), ("C1", root))


async def test_tool_slash_command_is_the_core_command(slack: SlackKit) -> None:
    status, body = await slack.command("/deploy", "api 1.4.2 staging")
    assert status == 200 and "Working on `/deploy api 1.4.2 staging`" in body
    await slack.settle(lambda: len(slack.fake.answers()) == 2)
    assert "deployed api 1.4.2 to staging" in slack.fake.answers()[-1]["text"]
    progress_shown_as_status(slack, ("C1", slack.fake.posts()[0].result["ts"]), tool="deploy")


async def test_bad_signature_is_refused_with_401(slack: SlackKit) -> None:
    status, _ = await slack.post('{"type": "event_callback"}', "application/json", secret="not-" + SECRET)
    assert status == 401
    status, _ = await slack.post("command=/ops&text=help", "application/x-www-form-urlencoded", secret="wrong")
    assert status == 401
    assert slack.channel.stats == {} and await slack.harness.wiring.bus.redis.xlen("inbox") == 0


def test_command_text_maps_slash_commands_to_the_core_command_model(slack_tools: ToolRegistry) -> None:

    def text(command: str, typed: str) -> str | None:
        raw: Command = {
            "command": command,
            "text": typed,
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": "U1",
            "trigger_id": "t",
        }
        return command_text(raw, "/ops", slack_tools)

    assert text("/deploy", "api 1.4.2 production") == "/deploy api 1.4.2 production"
    assert text("/ops", "deploy api 1.4.2 production") == "/deploy api 1.4.2 production"
    assert text("/ops", "list-services") == "/list-services"
    assert text("/ops", "") == "help"
    assert text("/ops", "roll back payments in staging") == "roll back payments in staging"
    assert text("/ops", "approve abcd1234") == "approve abcd1234"
    assert text("/reply", "hi") is None


def test_plain_text_undoes_slack_markup() -> None:
    assert plain_text("<@UBOT> check <https://x.test/health|x.test/health> &lt;ok&gt;", "UBOT") == (
        "check https://x.test/health <ok>"
    )
    assert plain_text("<@UBOT>", "UBOT") == "help"


async def test_an_event_that_cannot_be_queued_gets_a_500_and_its_retry_is_processed(slack: SlackKit) -> None:
    publish = slack.channel.bus.publish
    failures = [StoreUnavailable("Redis is unreachable")]

    async def flaky(trigger: Trigger) -> bool:
        if failures:
            raise failures.pop()
        return await publish(trigger)

    slack.channel.bus.publish = flaky  # type: ignore[method-assign]
    assert await slack.event(mention("help"), event_id="Ev1") == 500
    assert await slack.event(mention("help"), event_id="Ev1", retry=1) == 200
    await slack.settle(lambda: bool(slack.fake.called("chat.postMessage")))
    assert await user_texts(slack) == ["help"]


async def test_slack_url_verification_is_answered(slack: SlackKit) -> None:
    status, body = await slack.post('{"type": "url_verification", "challenge": "c-42"}', "application/json")
    assert status == 200 and "c-42" in body


async def test_http_mode_is_off_without_a_signing_secret(make_slack: MakeSlack) -> None:
    slack = await make_slack(serve=False, SLACK_SIGNING_SECRET="", SLACK_APP_TOKEN="xapp-test-token")
    assert slack.channel.routes() == []


async def test_a_badly_signed_slash_command_is_refused_before_anything_is_queued(slack: SlackKit) -> None:
    form = command_form(slack.fake, "/ops", "status api staging")
    status, _ = await slack.post(form, "application/x-www-form-urlencoded", secret="not-" + SECRET)
    assert status == 401
    old = str(int(time.time()) - 600)  # signed, but ten minutes ago: a replay
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=old, body=form) or ""
    headers = {"x-slack-request-timestamp": old, "x-slack-signature": signature}
    assert slack.session is not None
    async with slack.session.post(
        f"{slack.url}/slack/events",
        data=form.encode(),
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
    ) as response:
        assert response.status == 401
    assert slack.channel.stats == {} and await slack.harness.wiring.bus.redis.xlen("inbox") == 0


async def test_a_replayed_slash_command_is_queued_once(slack: SlackKit) -> None:
    form = command_form(slack.fake, "/ops", "status api staging")
    for _ in range(2):
        status, body = await slack.post(form, "application/x-www-form-urlencoded")
        assert status == 200 and json.loads(body) == {
            "text": "Working on `/status api staging`; the answer comes in a thread here."
        }
    assert slack.channel.stats == {"published": 1, "duplicate": 1}


async def test_a_slash_command_over_socket_mode_goes_through_bolt(slack: SlackKit) -> None:
    form = dict(parse_qsl(command_form(slack.fake, "/deploy", "api 1.4.2 staging")))
    response = await slack.channel.app.async_dispatch(AsyncBoltRequest(body=form, mode="socket_mode"))
    assert response.status == 200 and "Working on `/deploy api 1.4.2 staging`" in response.body
    await slack.settle(lambda: any("deployed api 1.4.2" in m["text"] for m in slack.fake.answers()))
    assert await user_texts(slack) == ["/deploy api 1.4.2 staging"]
