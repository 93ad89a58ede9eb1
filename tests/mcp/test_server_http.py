"""The bot's MCP server on `/mcp` of the HTTP server, driven by the official SDK's streamable-HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import mcp.types as mcp_types
import pytest
import redis.asyncio as aioredis

from core.domain import events as ev
from tests.conftest import Harness
from tests.mcp.server_fixtures import ALICE, CAROL, CI, MALLORY, Bot, Progress, http_session, running_bot, tools_file

DEPLOY = {"service": "api", "version": "1.4.3", "environment": "production"}


@pytest.fixture
async def harness(embedded_redis: str, make_harness: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    yield make_harness(client, BOT_TOOLS_FILE=str(tools_file(tmp_path)))
    await client.aclose()


@pytest.fixture
async def bot(harness: Harness) -> AsyncIterator[Bot]:
    async with running_bot(harness, wait_seconds=30) as running:
        yield running


def structured(result: mcp_types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: mcp_types.CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return " ".join(block.text for block in result.content if isinstance(block, mcp_types.TextContent))


async def test_an_approval_decided_through_the_api_reaches_the_waiting_caller(bot: Bot) -> None:
    """The card is a thread's approval under the policy; the waiting call gets the decision and progress."""
    progress = Progress()
    async with http_session(bot.url, CI) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"request_approval", "ask_human", "wait_for_decision"} <= tools
        call = asyncio.create_task(
            session.call_tool(
                "request_approval",
                {"action": "deploy", "arguments": DEPLOY, "reason": "release 1.4.3 is tested"},
                progress_callback=progress,
            )
        )
        record = await bot.pending("deploy")
        assert (record.tool, record.args, record.requester) == ("mcp:deploy", DEPLOY, "api:ci-bot")
        assert record.approvers == ["group:oncall"] and record.reason == "release 1.4.3 is tested"
        assert await bot.decide(record.approval_id, "approve", "go ahead") == 202
        decision = structured(await call)
    assert decision["status"] == "approved" and decision["decided_by"] == "web:alice"
    assert decision["arguments"] == DEPLOY and decision["approval_id"] == record.approval_id
    assert progress.seen and "waiting for a decision" in (progress.seen[-1][1] or "")
    state = await bot.harness.wiring.store.load_state(decision["handle"])
    assert state.status == "done"  # the thread ran the (empty) action and replied


async def test_a_rejection_carries_its_reason_and_a_policy_by_pattern_picks_the_approvers(bot: Bot) -> None:
    async with http_session(bot.url, CI) as session:
        call = asyncio.create_task(
            session.call_tool("request_approval", {"action": "db.migrate", "arguments": {"to": 42}, "reason": "schema"})
        )
        record = await bot.pending("db.migrate")
        assert record.approvers == ["web:carol"]
        assert await bot.decide(record.approval_id, "approve", token=ALICE) == 403  # not this policy's approver
        assert await bot.decide(record.approval_id, "reject", "not during the freeze", token=CAROL) == 202
        decision = structured(await call)
    assert decision["status"] == "rejected" and decision["reason"] == "not during the freeze"
    assert "Do not run it" in decision["message"]


async def test_a_handle_outlives_the_wait_and_answers_only_for_the_approved_arguments(harness: Harness) -> None:
    """Past the deadline the caller gets a handle; wait_for_decision then refuses other arguments."""
    async with running_bot(harness, wait_seconds=0.3) as bot, http_session(bot.url, CI) as session:
        first = structured(
            await session.call_tool("request_approval", {"action": "deploy", "arguments": DEPLOY, "reason": "r"})
        )
        assert first["status"] in ("queued", "pending") and "wait_for_decision" in first["message"]
        record = await bot.pending("deploy")
        assert await bot.decide(record.approval_id, "approve") == 202
        later = await session.call_tool("wait_for_decision", {"handle": first["handle"], "arguments": DEPLOY})
        assert structured(later)["status"] == "approved"
        changed = await session.call_tool(
            "wait_for_decision", {"handle": first["handle"], "arguments": DEPLOY | {"version": "2.0.0"}}
        )
        assert "is for other arguments than these" in error_text(changed)


async def test_an_unknown_token_is_refused_with_401_and_a_clear_message(bot: Bot) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Authorization": "Bearer not-a-known-token-at-all", "Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as http, http.post(f"{bot.url}/mcp", json=body, headers=headers) as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        message = (await response.json())["error"]["message"]
    assert "not in BOT_API_TOKENS" in message and "same tokens as the REST API" in message


async def test_an_identity_not_among_the_callers_is_refused_and_nothing_is_asked(bot: Bot) -> None:
    async with http_session(bot.url, MALLORY) as session:
        result = await session.call_tool("request_approval", {"action": "deploy", "arguments": {}, "reason": "r"})
    assert "api:mallory may not ask through the MCP server" in error_text(result)
    assert await bot.harness.wiring.store.pending_approvals() == []


async def test_another_callers_handle_is_not_readable(bot: Bot) -> None:
    async with http_session(bot.url, CI) as session:
        call = asyncio.create_task(
            session.call_tool("request_approval", {"action": "deploy", "arguments": {}, "reason": "r"})
        )
        record = await bot.pending("deploy")
        async with http_session(bot.url, ALICE) as other:
            peek = await other.call_tool("wait_for_decision", {"handle": record.thread_id})
        assert "is not a request of web:alice" in error_text(peek)
        await bot.decide(record.approval_id, "reject", "no")
        assert structured(await call)["status"] == "rejected"


async def test_a_question_is_asked_in_the_thread_and_its_answer_returned(bot: Bot) -> None:
    """ask_human: a Question with choices on the channel; an on-call member's answer reaches the caller."""
    async with http_session(bot.url, CI) as session:
        call = asyncio.create_task(
            session.call_tool("ask_human", {"question": "Which region first?", "options": ["eu", "us"]})
        )

        async def asked() -> ev.Question | None:
            _, items = await bot.harness.wiring.bus.follow("web", "0-0", block_ms=0)
            return next((o for o in items if isinstance(o, ev.Question)), None)

        from tests.eventually import eventually

        question = await eventually(asked, "the question on the web channel")
        assert question is not None and question.options == ["eu", "us"]
        answer = ev.MessageTrigger(
            id="answer-1",
            channel="web",
            conversation=question.conversation,
            sender="web:alice",
            text="us",
            thread_id=question.thread_id,
            answers=question.call_id,
        )
        await bot.harness.wiring.bus.publish(answer)
        decision = structured(await call)
    assert decision["status"] == "answered" and decision["choice"] == "us" and decision["answered_by"] == "web:alice"
