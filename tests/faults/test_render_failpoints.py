"""`bot channels` processes killed around a post: the message reaches Slack or Discord exactly once.

Slack: the renderer marks each post with its outbound id in message metadata; the renderer that
takes a dead one's entry over looks for that post before posting (adapters/slack/render.py).
Discord: each create carries a nonce from the outbound id with `enforce_nonce`; the fake, as
Discord, answers a repeated nonce with the message it made (adapters/discord/render.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from adapters.discord.inbound import TO_CHANNEL
from bot.redis_server import RedisServer
from core.domain import events as ev
from core.domain.ids import new_id
from core.redis.bus import Bus
from core.redis.store import Store
from tests.discord.fake_discord import CHANNEL as DISCORD_CHANNEL
from tests.discord.fake_discord import FakeDiscord
from tests.eventually import eventually
from tests.faults.cluster import FAST_TAKEOVER, Worker, Workers, worker_env
from tests.faults.harness import tools_toml
from tests.slack.fake_slack import FakeSlack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

THREAD = {"slack_team": "T1", "slack_channel": "C1", "slack_thread_ts": "1700000001.000100", "slack_user": "U1"}


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def renderers(tmp_path: Path, redis_server: RedisServer, fake_slack: FakeSlack) -> AsyncIterator[Workers]:
    tools = tmp_path / "tools.toml"
    tools.write_text(tools_toml(3600))
    (tmp_path / "data").mkdir()
    slack = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "test-signing-secret",
        "SLACK_API_URL": fake_slack.api_url,
    }
    group = Workers(tmp_path, worker_env(redis_server.url, tmp_path / "data", tools, **slack), command="channels")
    try:
        yield group
    finally:
        await group.close()


@pytest.fixture
async def bus(redis_server: RedisServer) -> AsyncIterator[Bus]:
    client = aioredis.Redis.from_url(redis_server.url)
    store = Store(client, lock_ttl_ms=int(FAST_TAKEOVER["BOT_LOCK_TTL_MS"]))
    yield Bus(client, store, claim_idle_ms=int(FAST_TAKEOVER["BOT_CLAIM_IDLE_MS"]))
    await client.aclose()


async def killed_at(renderer: Worker, point: str) -> None:
    code = await renderer.exited()
    assert code == -9, f"{renderer.name} exited with {code}, not at {point}\n{await renderer.tail()}"
    assert await renderer.logged(f"failpoint {point}"), await renderer.tail()


@pytest.mark.parametrize("point", ["before-render", "after-render"])
async def test_a_renderer_killed_around_the_post_shows_the_message_once(
    point: str, renderers: Workers, bus: Bus, fake_slack: FakeSlack
) -> None:
    (doomed,) = await renderers.start(1, BOT_FAILPOINTS=f"{point}=kill")
    text = "deployed api 1.4.2 to production"
    reply = ev.Reply(
        id=new_id(), channel="slack", conversation="T1/C1/1700000001.000100", thread_id="t1", reply_to=THREAD, text=text
    )
    await bus.send(reply)
    await killed_at(doomed, point)
    posted_before = [m["text"] for m in fake_slack.messages]
    assert posted_before == ([text] if point == "after-render" else [])

    await renderers.start(1)

    async def recorded() -> bool:
        return reply.id in await bus.rendered_ids("slack", [reply.id])

    await eventually(recorded, f"{reply.id} recorded as rendered by the second renderer")
    assert [m["text"] for m in fake_slack.messages] == [text]
    assert len(fake_slack.called("chat.postMessage")) == 1
    looked = len(fake_slack.called("conversations.replies"))
    assert looked == (1 if point == "after-render" else 0), "only a post that may have happened is looked for"


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.mark.parametrize("point", ["before-render", "after-render"])
async def test_a_discord_renderer_killed_around_the_post_shows_the_message_once(
    point: str, tmp_path: Path, redis_server: RedisServer, bus: Bus, fake_discord: FakeDiscord
) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(tools_toml(3600))
    (tmp_path / "data").mkdir()
    discord_env = {
        "DISCORD_TOKEN": "fake-token",
        "DISCORD_API_BASE": fake_discord.base,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
    }
    env = worker_env(redis_server.url, tmp_path / "data", tools, **discord_env)
    renderers = Workers(tmp_path, env, command="channels")
    try:
        (doomed,) = await renderers.start(1, BOT_FAILPOINTS=f"{point}=kill")
        text = "deployed api 1.4.2 to production"
        reply = ev.Reply(
            id=new_id(),
            channel="discord",
            conversation=f"dm/{DISCORD_CHANNEL}",
            thread_id="t1",
            reply_to={TO_CHANNEL: DISCORD_CHANNEL},
            text=text,
        )
        await bus.send(reply)
        await killed_at(doomed, point)
        assert fake_discord.messages_made(DISCORD_CHANNEL) == ([text] if point == "after-render" else [])

        await renderers.start(1)

        async def recorded() -> bool:
            return reply.id in await bus.rendered_ids("discord", [reply.id])

        await eventually(recorded, f"{reply.id} recorded as rendered by the second renderer")
        assert fake_discord.messages_made(DISCORD_CHANNEL) == [text]
    finally:
        await renderers.close()
