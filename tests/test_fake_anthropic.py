"""The fake Anthropic server is faithful enough to drive the real SDK."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anthropic
import pytest
from anthropic.types import MessageParam, TextBlock, ToolUseBlock

from tests.fake_anthropic import (
    FakeAnthropic,
    bad_request,
    make_usage,
    rate_limited,
    text_reply,
    tool_use,
    write_script,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-test-model"
HELLO: list[MessageParam] = [{"role": "user", "content": "restart web please"}]


def client_for(fake: FakeAnthropic, *, max_retries: int = 2) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test", base_url=fake.base_url, max_retries=max_retries)


async def test_tool_use_parses_into_sdk_types() -> None:
    usage = make_usage(120, 30, cache_read_input_tokens=100)
    script = [tool_use("restart_service", {"name": "web"}, id="toolu_01abc", text="Restarting.", usage=usage)]
    async with FakeAnthropic(script) as fake, client_for(fake) as client:
        reply = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)

    assert reply.stop_reason == "tool_use"
    assert reply.model == MODEL
    text, call = reply.content
    assert isinstance(text, TextBlock) and text.text == "Restarting."
    assert isinstance(call, ToolUseBlock)
    assert (call.id, call.name, call.input) == ("toolu_01abc", "restart_service", {"name": "web"})
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cache_read_input_tokens) == (120, 30, 100)
    assert fake.requests == [{"model": MODEL, "max_tokens": 100, "messages": HELLO}]
    assert fake.headers[0]["authorization"] == "Bearer test"


async def test_rate_limit_is_retried_by_the_sdk() -> None:
    async with FakeAnthropic([rate_limited(), text_reply("done")]) as fake, client_for(fake) as client:
        reply = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)

    assert isinstance(reply.content[0], TextBlock) and reply.content[0].text == "done"
    assert reply.stop_reason == "end_turn"
    assert len(fake.requests) == 2


async def test_error_steps_become_sdk_exceptions() -> None:
    async with FakeAnthropic([bad_request("messages: must not be empty")]) as fake, client_for(fake) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)

    error = {"type": "invalid_request_error", "message": "messages: must not be empty"}
    assert caught.value.body == {"type": "error", "error": error}
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


async def test_exhausted_script_fails_loudly() -> None:
    async with FakeAnthropic([]) as fake, client_for(fake, max_retries=0) as client:
        with pytest.raises(anthropic.InternalServerError, match="script exhausted"):
            await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)

    assert len(fake.requests) == 1


async def test_callable_script_sees_each_request() -> None:
    def echo(request: dict[str, object]) -> dict[str, object]:
        return text_reply(f"model was {request['model']}")

    async with FakeAnthropic(echo) as fake, client_for(fake) as client:
        for _ in range(2):
            reply = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
            assert isinstance(reply.content[0], TextBlock) and reply.content[0].text == f"model was {MODEL}"

    assert len(fake.requests) == 2


async def test_count_tokens() -> None:
    async with FakeAnthropic([]) as fake, client_for(fake) as client:
        counted = await client.messages.count_tokens(model=MODEL, messages=HELLO)

    assert counted.input_tokens == len(json.dumps({"model": MODEL, "messages": HELLO})) // 4
    assert fake.count_tokens_requests == [{"model": MODEL, "messages": HELLO}]
    assert fake.requests == []


@asynccontextmanager
async def standalone(script: Path, log: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """Run ``python -m tests.fake_anthropic`` and yield its base URL; kill it if the test did not stop it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_anthropic",
        "--script",
        str(script),
        "--log",
        str(log),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        assert line.startswith("LISTENING http://127.0.0.1:"), f"unexpected first line from the fake: {line!r}"
        yield line.split()[1], proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    path = tmp_path / "script.json"
    write_script(path, [rate_limited(), tool_use("restart_service", {"name": "web"}, id="toolu_01xyz")])
    return path


async def test_standalone_serves_script_and_logs_requests(script_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    async with standalone(script_file, log) as (base_url, proc):
        async with anthropic.AsyncAnthropic(api_key="test", base_url=base_url, max_retries=2) as client:
            reply = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
        proc.terminate()
        await proc.communicate()
        assert proc.returncode == 0

    assert isinstance(reply.content[0], ToolUseBlock) and reply.content[0].id == "toolu_01xyz"
    records = [json.loads(line) for line in (await asyncio.to_thread(log.read_text)).splitlines()]
    assert [record["path"] for record in records] == ["/v1/messages", "/v1/messages"]
    assert records[-1]["body"] == {"model": MODEL, "max_tokens": 100, "messages": HELLO}
    assert records[-1]["headers"]["authorization"] == "Bearer test"
