"""`bot mcp` as a subprocess, driven by the official SDK's stdio client; decisions from the terminal side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain.ids import new_id
from core.redis.store import ApprovalRecord
from tests.conftest import Harness
from tests.eventually import eventually
from tests.faults.cluster import Workers
from tests.mcp.server_fixtures import Progress, stdio_env, stdio_session, tools_file
from tests.mcp.test_server_http import error_text, structured

SCALE = {"deployment": "api", "replicas": 2}


@pytest.fixture
async def redis_url(embedded_redis: str) -> AsyncIterator[str]:
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    await client.aclose()
    yield embedded_redis


@pytest.fixture
async def harness(redis_url: str, make_harness: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    """A core on the same Redis, to decide the way the terminal does (`approve <id>` from cli:dana)."""
    client = aioredis.Redis.from_url(redis_url)
    yield make_harness(client, BOT_TOOLS_FILE=str(tools_file(tmp_path)))
    await client.aclose()


async def pending(harness: Harness) -> ApprovalRecord:
    async def found() -> ApprovalRecord | None:
        return next(iter(await harness.wiring.store.pending_approvals()), None)

    record = await eventually(found, "the approval card opened by a worker")
    assert record is not None
    return record


async def say_at_terminal(harness: Harness, text: str, user: str = "cli:dana") -> None:
    """What `bot chat` publishes for a typed line."""
    trigger = ev.MessageTrigger(id=new_id(), channel="cli", conversation=f"{user}/x", sender=user, text=text)
    await harness.wiring.bus.publish(trigger)


async def test_approved_at_the_terminal_while_the_stdio_caller_waits(
    redis_url: str, harness: Harness, tmp_path: Path
) -> None:
    env = stdio_env(redis_url, tmp_path, tools_file(tmp_path), BOT_MCP_WAIT_SECONDS="30")
    progress = Progress()
    async with stdio_session(env, "--worker") as session:
        call = asyncio.create_task(
            session.call_tool(
                "request_approval",
                {"action": "k8s.scale", "arguments": SCALE, "reason": "load is down"},
                progress_callback=progress,
            )
        )
        record = await pending(harness)
        assert (record.requester, record.tool) == ("cli:agent", "mcp:k8s.scale")
        await say_at_terminal(harness, f"approve {record.approval_id} fine")
        decision = structured(await call)
    assert decision["status"] == "approved" and decision["decided_by"] == "cli:dana"
    assert decision["arguments"] == SCALE and progress.seen


async def test_rejected_at_the_terminal_with_a_reason(redis_url: str, harness: Harness, tmp_path: Path) -> None:
    env = stdio_env(redis_url, tmp_path, tools_file(tmp_path), BOT_MCP_WAIT_SECONDS="30")
    async with stdio_session(env, "--worker") as session:
        call = asyncio.create_task(
            session.call_tool("request_approval", {"action": "k8s.scale", "arguments": SCALE, "reason": "r"})
        )
        record = await pending(harness)
        await say_at_terminal(harness, f"reject {record.approval_id} replicas must stay at 3")
        decision = structured(await call)
    assert decision["status"] == "rejected" and decision["reason"] == "replicas must stay at 3"


async def test_self_approval_is_refused_by_the_policy(redis_url: str, harness: Harness, tmp_path: Path) -> None:
    """The caller's own identity may not approve its request (allow_self is false by default)."""
    env = stdio_env(redis_url, tmp_path, tools_file(tmp_path), BOT_MCP_WAIT_SECONDS="0.5")
    async with stdio_session(env, "--worker") as session:
        first = structured(
            await session.call_tool("request_approval", {"action": "deploy", "arguments": {}, "reason": "r"})
        )
        record = await pending(harness)
        await say_at_terminal(harness, f"approve {record.approval_id}", user="cli:agent")
        await say_at_terminal(harness, f"approve {record.approval_id}")  # a real approver, after the refusal
        decision = structured(await session.call_tool("wait_for_decision", {"handle": first["handle"]}))
    assert decision["decided_by"] == "cli:dana"


async def test_wait_for_decision_after_the_worker_that_opened_it_was_killed(
    redis_url: str, harness: Harness, tmp_path: Path
) -> None:
    """A `bot worker` opens the card and is SIGKILLed; the decision comes later, through another worker,
    and a new `bot mcp` process (the first one gone too) gives it to the caller."""
    tools = tools_file(tmp_path)
    env = stdio_env(redis_url, tmp_path, tools, BOT_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    workers = Workers(tmp_path, env)
    try:
        (opener,) = await workers.start(1)
        async with stdio_session(env | {"BOT_MCP_WAIT_SECONDS": "0.5"}) as session:
            first = structured(
                await session.call_tool("request_approval", {"action": "deploy", "arguments": SCALE, "reason": "r"})
            )
            handle = first["handle"]
            await pending(harness)
        await opener.crash()
        record = await pending(harness)
        await say_at_terminal(harness, f"approve {record.approval_id}")
        await workers.start(1)
        async with stdio_session(env | {"BOT_MCP_WAIT_SECONDS": "30"}) as session:
            later = await session.call_tool("wait_for_decision", {"handle": handle, "arguments": SCALE})
            decision = structured(later)
            changed = await session.call_tool("wait_for_decision", {"handle": handle, "arguments": {"replicas": 9}})
    finally:
        await workers.close()
    assert decision["status"] == "approved" and decision["handle"] == handle
    assert "is for other arguments than these" in error_text(changed)
