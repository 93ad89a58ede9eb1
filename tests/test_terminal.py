"""The terminal channel: what a person types reaches the core as they meant it, and what comes back
reads as text (no identities or timestamps in core's raw form)."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from adapters.terminal import Terminal, unwrapped
from core.model.llm import Choice, ModelRequest
from tests.conftest import Harness, ScriptedModel, call


def test_ops_prefix_is_unwrapped_like_slacks_command() -> None:
    assert unwrapped("/ops status api staging") == "status api staging"
    assert unwrapped("/OPS   what is wrong with api?") == "what is wrong with api?"
    assert unwrapped("/ops") == "/ops", "bare /ops is help"
    assert unwrapped("/opsx status") == "/opsx status"


async def terminal_lines(h: Harness, *typed: str) -> list[str]:
    printed: list[str] = []
    terminal = Terminal(h.wiring.bus, "operator", write=printed.append)
    terminal.conversation = h.conversation
    for text in typed:
        await terminal.send(text)
        await h.drain()
    await terminal.print_new()
    return [line for block in printed for line in block.splitlines()]


async def test_help_and_commands_from_the_terminal_need_no_model(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    def never(request: ModelRequest) -> Choice:
        raise AssertionError(f"the model was asked about {request.state.last_user_text!r}")

    model = ScriptedModel(never)
    h = make_harness(fake_redis, model)
    lines = await terminal_lines(h, "help", "/ops help", "/ops", "status api staging")
    assert model.requests == []
    assert sum("Commands you can use" in line for line in lines) == 3
    assert any("api" in line and "staging" in line for line in lines[-5:]), lines[-5:]


async def test_ops_with_free_text_goes_to_the_model_as_the_request(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    model = ScriptedModel([call("reply", message="api is healthy.")])
    h = make_harness(fake_redis, model)
    lines = await terminal_lines(h, "/ops what is up with api?")
    assert [request.state.last_user_text for request in model.requests] == ["what is up with api?"]
    assert "bot> api is healthy." in lines
