"""Running the channel: gateway, health, the outbox loop, and registering slash commands."""

from __future__ import annotations

import asyncio

import pytest
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord.channel import DiscordChannel, OpsBot, sync_commands
from core import ConfigError
from tests.discord.conftest import REQUESTER, Scene
from tests.discord.fake_discord import MESSAGE_CONTENT_INTENT, FakeDiscord, message_create
from tests.eventually import eventually


async def test_run_connects_reports_health_answers_and_stops(
    scene: Scene, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake_discord.gateway_url))
    wiring = scene.harness.wiring
    channel = DiscordChannel(
        scene.settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, client=OpsBot(guild_ready_timeout=0)
    )
    assert not channel.healthy
    stop = asyncio.Event()
    running = asyncio.create_task(channel.run(stop))

    async def healthy() -> bool:
        return channel.healthy

    await eventually(healthy, "the gateway session")
    [identify] = [f for f in fake_discord.frames if f["op"] == 2]
    assert identify["d"]["intents"] & MESSAGE_CONTENT_INTENT == 0

    await fake_discord.dispatch(
        "MESSAGE_CREATE", message_create("help", author=REQUESTER, channel_id="4242", guild=False)
    )

    async def enqueued() -> bool:
        return await scene.inbox_size() > 0

    await eventually(enqueued, "the DM on the inbox")
    await scene.harness.drain()

    async def answered() -> bool:
        return bool(fake_discord.find("POST", r"/channels/4242/messages"))

    await eventually(answered, "the outbox loop to post the answer")
    stop.set()
    await running
    assert not channel.healthy and channel.client.is_closed()


async def test_a_refused_message_content_intent_stops_run_with_the_fix(
    scene: Scene, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake_discord.gateway_url))
    fake_discord.privileged_intents = False
    wiring = scene.harness.wiring
    client = OpsBot(message_content=True)
    channel = DiscordChannel(scene.settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, client=client)
    with pytest.raises(ConfigError, match="Privileged Gateway Intents"):
        await channel.run(asyncio.Event())
    assert client.is_closed() and not channel.healthy


async def test_rest_only_run_renders_the_outbox(scene: Scene, fake_discord: FakeDiscord) -> None:
    """A process without the gateway (say, next to a worker) still posts replies and edits cards."""
    channel = scene.channel
    dm = message_create("help", author=REQUESTER, channel_id="4242", guild=False)
    channel.client._connection.parse_message_create(dm)  # type: ignore[arg-type]

    async def enqueued() -> bool:
        return await scene.inbox_size() > 0

    await eventually(enqueued, "the DM on the inbox")
    await scene.harness.drain()
    stop = asyncio.Event()
    running = asyncio.create_task(channel.run(stop, gateway=False))

    async def answered() -> bool:
        return bool(fake_discord.find("POST", r"/channels/4242/messages"))

    await eventually(answered, "the outbox loop to post the answer")
    assert channel.healthy
    stop.set()
    await running
    assert not channel.healthy


@pytest.mark.parametrize("guild_id", [500, None])
async def test_sync_commands_registers_typed_options(
    scene: Scene, fake_discord: FakeDiscord, guild_id: int | None
) -> None:
    count = await sync_commands(scene.settings, scene.harness.wiring.tools, guild_id)
    path = "/applications/999/guilds/500/commands" if guild_id else "/applications/999/commands"
    [put] = fake_discord.find("PUT", path)
    commands = {c["name"]: c for c in put.body}
    assert count == len(commands) and "ops" in commands and not {"reply", "ask_human"} & set(commands)
    deploy = {o["name"]: o for o in commands["deploy"]["options"]}
    assert [o["name"] for o in commands["deploy"]["options"]] == ["service", "version", "environment"]
    assert deploy["service"]["type"] == 3 and deploy["service"]["required"] is True
    assert [c["value"] for c in deploy["environment"]["choices"]] == ["staging", "production"]
    assert "choices" not in deploy["version"] and deploy["version"]["description"] == "semantic version, e.g. 1.4.2"
    assert commands["ops"]["options"][0]["name"] == "request"
