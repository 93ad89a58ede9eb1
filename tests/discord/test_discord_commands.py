"""Typed slash commands from JSON schemas: every option kind maps to the text command's tool call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from adapters.discord.app_commands import command_text
from adapters.discord.channel import sync_commands
from core import parse_command
from core.domain import events as ev
from tests.conftest import Harness
from tests.discord.conftest import REQUESTER, MakeScene
from tests.discord.fake_discord import FakeDiscord, message_create, slash, text_channel

TOOLS = """
[tools.scale]
description = "Scale a service."
executor = { kind = "command", argv = ["echo", "scaled", "{service}"] }
[tools.scale.parameters]
type = "object"
required = ["service", "replicas"]
additionalProperties = false
properties.service = { type = "string", enum = ["api", "web"] }
properties.replicas = { type = "integer", minimum = 1, maximum = 20 }
properties.ratio = { type = "number" }
properties.dry_run = { type = "boolean" }
properties.tags = { type = "array", items = { type = "string" }, description = "labels" }
properties.note = { type = "string", maxLength = 50 }
"""


async def test_every_option_kind_makes_the_same_call_as_the_text_command(
    make_scene: MakeScene, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    (tmp_path / "tools.toml").write_text(TOOLS)
    scene = await make_scene(BOT_TOOLS_FILE=str(tmp_path / "tools.toml"))
    text = "<@999> /scale service=api replicas=3 ratio=0.5 dry_run=true tags=a,b 'note=two words'"
    await scene.feed(message_create(text, author=REQUESTER, mention=True))
    options = {"service": "api", "replicas": 3, "ratio": 0.5, "dry_run": True, "tags": "a,b", "note": "two words"}
    await scene.feed(slash("scale", options, who=REQUESTER, channel=text_channel()))
    calls = [
        [(e.tool, e.args) for e in await scene.events(t) if isinstance(e, ev.ToolCall) and e.tool != "reply"]
        for t in await scene.threads()
    ]
    expected = {"service": "api", "replicas": 3, "ratio": 0.5, "dry_run": True, "tags": ["a", "b"], "note": "two words"}
    assert calls == [[("scale", expected)], [("scale", expected)]]

    await sync_commands(scene.settings, scene.harness.wiring.tools, 500)
    [put] = fake_discord.find("PUT", r"/applications/999/guilds/500/commands")
    [scale] = [c for c in put.body if c["name"] == "scale"]
    got = {o["name"]: o for o in scale["options"]}
    assert [o["name"] for o in scale["options"]][:2] == ["service", "replicas"]  # required first
    assert (got["replicas"]["type"], got["replicas"]["min_value"], got["replicas"]["max_value"]) == (4, 1, 20)
    assert got["replicas"]["required"] and not got["ratio"].get("required")
    assert (got["ratio"]["type"], got["dry_run"]["type"], got["tags"]["type"]) == (10, 5, 3)
    assert got["tags"]["description"] == "labels (comma-separated)" and got["note"]["max_length"] == 50


def test_command_text_quotes_what_needs_quoting(
    make_harness: Callable[..., Harness], fake_redis: aioredis.Redis
) -> None:
    text = command_text("check_url", {"url": "https://example.com/a b", "unused": None})
    assert text == "/check_url 'url=https://example.com/a b'"
    tools = make_harness(fake_redis).wiring.tools
    assert parse_command(text, tools) == ("check_url", {"url": "https://example.com/a b"})
