"""A scene for Discord tests: the fake REST server, a core with a real worker, and channel instances."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import discord
import pytest
import redis.asyncio as aioredis

from adapters.discord.channel import DiscordChannel
from config.channels import DiscordSettings
from core import Event, ThreadState
from tests.conftest import Harness, ScriptedModel
from tests.discord.fake_discord import FakeDiscord, user
from tests.eventually import eventually

APPROVER = user("111", "olga")  # in group oncall
REQUESTER = user("222", "dana")
OUTSIDER = user("333", "mallory")


@dataclass
class Scene:
    fake: FakeDiscord
    harness: Harness
    settings: DiscordSettings
    channels: list[DiscordChannel] = field(default_factory=list)

    @property
    def channel(self) -> DiscordChannel:
        return self.channels[0]

    async def new_channel(self, **kwargs: Any) -> DiscordChannel:
        """Another channel instance with its own client, logged in over REST: another process."""
        wiring = self.harness.wiring
        channel = DiscordChannel(self.settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, **kwargs)
        self.channels.append(channel)
        await channel.login()
        return channel

    async def inbox_size(self) -> int:
        return int(await self.harness.wiring.redis.xlen("inbox"))

    async def feed(self, payload: dict[str, Any], via: DiscordChannel | None = None, enqueues: bool = True) -> None:
        """Feed one gateway event to a client's parser, then run the worker and render the outbox."""
        channel = via or self.channel
        state = channel.client._connection
        before = await self.inbox_size()
        if "token" in payload:
            state.parse_interaction_create(payload)  # type: ignore[arg-type]

            async def acknowledged() -> bool:
                return payload["id"] in self.fake.acknowledged

            await eventually(acknowledged, f"interaction {payload['id']} to be acknowledged")
        else:
            state.parse_message_create(payload)  # type: ignore[arg-type]
        if enqueues:

            async def enqueued() -> bool:
                return await self.inbox_size() > before

            await eventually(enqueued, "a trigger on the inbox")
        await self.harness.drain()
        await self.render(channel)

    async def render(self, channel: DiscordChannel | None = None) -> None:
        """Render the discord outbox the way `bus.deliver` does, without its blocking read."""
        bus = self.harness.wiring.bus
        while items := await bus.receive("discord", "test-renderer", block_ms=0):
            for entry_id, outbound in items:
                await (channel or self.channel).render(outbound)
                await bus.done("discord", entry_id, "renderers")

    async def threads(self) -> list[ThreadState]:
        return await self.harness.wiring.store.list_threads()

    async def events(self, thread: ThreadState) -> list[Event]:
        return await self.harness.wiring.store.load_events(thread.thread_id)


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """discord.py swallows exceptions in handlers and logs them: a logged error fails the test."""
    yield
    errors = [r for when in ("setup", "call") for r in caplog.get_records(when) if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    base = await fake.start()
    monkeypatch.setattr(discord.http.Route, "BASE", base)  # restored after the test, whatever sets it meanwhile
    yield fake
    await fake.stop()


@pytest.fixture
async def make_scene(
    fake_discord: FakeDiscord, fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> AsyncIterator[Callable[..., Awaitable[Scene]]]:
    """`await make_scene(model, **env)`: a core configured by `env` (with `model` as its language model,
    if given) and one logged-in channel."""
    scenes: list[Scene] = []

    async def factory(model: ScriptedModel | None = None, **env: str) -> Scene:
        harness = make_harness(fake_redis, model, **{"BOT_GROUP_ONCALL": f"discord:{APPROVER['id']}", **env})
        values = {"DISCORD_TOKEN": "fake-token", "DISCORD_API_BASE": fake_discord.base, **env}
        scene = Scene(fake_discord, harness, DiscordSettings.model_validate(values))
        scenes.append(scene)
        await scene.new_channel()
        return scene

    yield factory
    for scene in scenes:
        for channel in scene.channels:
            await channel.close()


@pytest.fixture
async def scene(make_scene: Callable[..., Awaitable[Scene]]) -> Scene:
    return await make_scene()


MakeScene = Callable[..., Awaitable[Scene]]
