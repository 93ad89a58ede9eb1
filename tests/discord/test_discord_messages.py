"""Messages: mentions, DMs and the bot's threads get answers where they were asked; long output is split."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.discord.channel import DiscordChannel, OpsBot
from adapters.discord.inbound import TO_CHANNEL
from adapters.discord.state import parts_key
from adapters.discord.text import split_message
from core import ChannelError
from core.domain import events as ev
from core.domain.ids import new_id
from tests.discord.conftest import REQUESTER, MakeScene, Scene
from tests.discord.fake_discord import CHANNEL, NONCE_WINDOW_SECONDS, Call, message_create


async def test_a_mention_is_answered_in_a_thread_started_on_it(scene: Scene) -> None:
    mention = message_create("<@999> help", author=REQUESTER, mention=True)
    await scene.feed(mention)
    assert scene.fake.find("POST", rf"/channels/{CHANNEL}/messages/{mention['id']}/threads")
    replies = scene.fake.find("POST", rf"/channels/{mention['id']}/messages")
    assert len(replies) == 1 and "/deploy" in replies[0].body["content"]
    [thread] = await scene.threads()
    assert thread.conversation == f"500/{CHANNEL}/{mention['id']}" and thread.requester == "discord:222"


async def test_a_mention_in_the_bots_thread_continues_the_same_conversation(scene: Scene) -> None:
    first = message_create("<@999> help", author=REQUESTER, mention=True)
    await scene.feed(first)
    again = message_create("<@!999> /status api staging", author=REQUESTER, channel_id=first["id"], mention=True)
    await scene.feed(again)
    [thread] = await scene.threads()
    texts = [e.text for e in await scene.events(thread) if isinstance(e, ev.UserMessage)]
    assert texts == ["help", "/status api staging"]
    assert len(scene.fake.find("POST", r"/channels/\d+/messages/\d+/threads")) == 1
    assert len(scene.fake.find("POST", rf"/channels/{first['id']}/messages")) == 2


async def test_a_plain_message_elsewhere_is_ignored(scene: Scene) -> None:
    """Without the message-content intent a guild message that does not mention the bot arrives empty."""
    plain = message_create("", author=REQUESTER)
    scene.channel.client._connection.parse_message_create(plain)  # type: ignore[arg-type]
    mention = message_create("<@999> help", author=REQUESTER, mention=True)
    await scene.feed(mention)
    assert [t.conversation for t in await scene.threads()] == [f"500/{CHANNEL}/{mention['id']}"]


async def test_a_dm_is_answered_in_the_dm(scene: Scene) -> None:
    dm = message_create("help", author=REQUESTER, channel_id="4242", guild=False)
    await scene.feed(dm)
    replies = scene.fake.find("POST", r"/channels/4242/messages")
    assert len(replies) == 1 and "/deploy" in replies[0].body["content"]
    assert not scene.fake.find("POST", r"/channels/\d+/messages/\d+/threads")
    [thread] = await scene.threads()
    assert thread.conversation == "dm/4242"


async def test_a_redelivered_message_is_handled_once(scene: Scene) -> None:
    dm = message_create("help", author=REQUESTER, channel_id="4242", guild=False)
    await scene.feed(dm)
    scene.channel.client._connection.parse_message_create(dm)  # type: ignore[arg-type]
    await scene.feed(message_create("/status api staging", author=REQUESTER, channel_id="4242", guild=False))
    [thread] = await scene.threads()
    assert len([e for e in await scene.events(thread) if isinstance(e, ev.UserMessage)]) == 2


async def test_long_output_is_split_under_2000_characters(make_scene: MakeScene, tmp_path: Path) -> None:
    script = tmp_path / "dump.py"
    script.write_text("for i in range(55):\n    print(f'line {i:04d} ' + 'x' * 60)\n")  # 3,800 characters
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[tools.dump]\ndescription = 'Print a long log.'\nmax_output = 20000\n"
        f"executor = {{kind = 'command', argv = ['{{python}}', '{script}']}}\n"
    )
    scene = await make_scene(BOT_TOOLS_FILE=str(tools))
    await scene.feed(message_create("/dump", author=REQUESTER, channel_id="4242", guild=False))
    pieces = [c.body["content"] for c in scene.fake.find("POST", r"/channels/4242/messages")]
    assert len(pieces) >= 2 and all(len(p) < 2000 for p in pieces)
    text = "\n".join(pieces)
    assert "line 0000" in text and "line 0054" in text


def test_split_message_keeps_code_blocks_closed() -> None:
    text = "```\n" + "\n".join("y" * 100 for _ in range(50)) + "\n```"
    pieces = split_message(text)
    assert len(pieces) > 1 and all(len(p) <= 2000 and p.count("```") % 2 == 0 for p in pieces)
    assert split_message("z" * 4500) == ["z" * 1968, "z" * 1968, "z" * 564]


async def test_with_the_content_intent_a_plain_message_in_the_bots_thread_continues_it(make_scene: MakeScene) -> None:
    scene = await make_scene()
    wiring = scene.harness.wiring
    channel = DiscordChannel(
        scene.settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, client=OpsBot(message_content=True)
    )
    scene.channels.append(channel)
    await channel.login()
    first = message_create("<@999> help", author=REQUESTER, mention=True)
    await scene.feed(first, via=channel)
    await scene.feed(message_create("/status api staging", author=REQUESTER, channel_id=first["id"]), via=channel)
    elsewhere = message_create("/status api production", author=REQUESTER, channel_id="12345")
    channel.client._connection.parse_message_create(elsewhere)  # type: ignore[arg-type]
    await scene.feed(message_create("<@999> help", author=REQUESTER, channel_id="12345", mention=True), via=channel)
    texts = {
        t.conversation: [e.text for e in await scene.events(t) if isinstance(e, ev.UserMessage)]
        for t in await scene.threads()
    }
    assert texts[f"500/{CHANNEL}/{first['id']}"] == ["help", "/status api staging"]
    assert [t for c, t in texts.items() if c.startswith("500/12345/")] == [["help"]]


async def test_a_refused_post_is_a_channel_error_that_says_which_permissions(scene: Scene) -> None:
    scene.fake.forbidden.add("4242")
    with pytest.raises(ChannelError, match="give the bot Send Messages"):
        await scene.feed(message_create("help", author=REQUESTER, channel_id="4242", guild=False))


def reply_to_channel(text: str) -> ev.Reply:
    """A final reply for a conversation answered in the channel itself (a DM-like place, no thread)."""
    return ev.Reply(
        id=new_id(),
        channel="discord",
        conversation=f"dm/{CHANNEL}",
        thread_id="t1",
        reply_to={TO_CHANNEL: CHANNEL},
        text=text,
    )


async def crash_before_the_record(scene: Scene, outbound: ev.Outbound) -> None:
    """What a renderer that died between Discord's answer and its own records leaves: no record of the parts."""
    await scene.harness.wiring.redis.delete(parts_key(outbound.id))


def creates(scene: Scene) -> list[Call]:
    return scene.fake.find("POST", rf"/channels/{CHANNEL}/messages")


async def test_a_reply_rendered_again_after_a_crash_is_created_once(scene: Scene) -> None:
    """The renderer that takes a dead one's message over sends the same nonce: Discord makes nothing new."""
    reply = reply_to_channel("deployed api 1.4.2")
    await scene.channel.render(reply)
    await crash_before_the_record(scene, reply)
    await scene.channel.render(reply)
    first, again = creates(scene)
    assert first.body["nonce"] == again.body["nonce"] and len(first.body["nonce"]) <= 25
    assert first.body["enforce_nonce"] is again.body["enforce_nonce"] is True
    assert scene.fake.messages_made(CHANNEL) == ["deployed api 1.4.2"]


async def test_a_reply_rendered_again_after_its_record_asks_discord_nothing(scene: Scene) -> None:
    reply = reply_to_channel("deployed api 1.4.2")
    await scene.channel.render(reply)
    await scene.channel.render(reply)
    assert len(creates(scene)) == 1 and scene.fake.messages_made(CHANNEL) == ["deployed api 1.4.2"]


LONG = "\n".join(f"line {n:04d} " + "y" * 80 for n in range(60))


async def test_a_long_reply_rendered_again_creates_each_part_once(scene: Scene) -> None:
    reply = reply_to_channel(LONG)
    await scene.channel.render(reply)
    await crash_before_the_record(scene, reply)
    await scene.channel.render(reply)
    parts = split_message(LONG)
    assert len(parts) > 1 and scene.fake.messages_made(CHANNEL) == parts
    assert len({c.body["nonce"] for c in creates(scene)}) == len(parts), "one nonce per part"


async def test_a_long_reply_retried_after_the_nonce_window_posts_only_the_missing_parts(scene: Scene) -> None:
    """Part 2 is rate limited for longer than Discord remembers nonces: the retry skips the recorded part 1."""
    now = [0.0]
    scene.fake.clock = lambda: now[0]
    scene.fake.limited += [None, 600.0]
    reply = reply_to_channel(LONG)
    with pytest.raises(ChannelError) as limited:
        await scene.channel.render(reply)
    assert limited.value.retry_after == 600.0
    now[0] += 600.0 + NONCE_WINDOW_SECONDS
    await scene.channel.render(reply)
    assert scene.fake.messages_made(CHANNEL) == split_message(LONG)


async def test_a_long_rate_limit_is_a_channel_error_with_discords_retry_after(scene: Scene) -> None:
    """Discord asks for more than the client waits itself: delivery waits, the render slot is free."""
    scene.fake.limited.append(45.0)
    with pytest.raises(ChannelError, match="rate-limited") as limited:
        await scene.channel.render(reply_to_channel("hello"))
    assert limited.value.retry_after == 45.0
    await scene.channel.render(reply_to_channel("hello"))
    assert scene.fake.messages_made(CHANNEL) == ["hello"]


async def test_a_cloudflare_rate_limit_is_a_channel_error_with_its_retry_after(scene: Scene) -> None:
    """discord.py does not retry a 429 without Discord's `Via` header; its Retry-After still sets the wait."""
    scene.fake.banned.append(120.0)
    reply = reply_to_channel("hello")
    with pytest.raises(ChannelError, match="429") as limited:
        await scene.channel.render(reply)
    assert limited.value.retry_after == 120.0
    await scene.channel.render(reply)
    assert scene.fake.messages_made(CHANNEL) == ["hello"]
