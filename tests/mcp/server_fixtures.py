"""Helpers for the tests of the bot's own MCP server (`bot.mcp`): a tools file with `[mcp_server]`, the
HTTP server on port 0 with a worker, and the official SDK's client over streamable HTTP or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bot.http.app import build_app, serve
from bot.mcp.settings import McpSettings
from core.redis.store import ApprovalRecord
from tests.conftest import Harness
from tests.eventually import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
CI = "ci-bot-token-0123456789ab"  # api:ci-bot: an agent that may ask
ALICE = "alice-token-0123456789ab"  # web:alice: on call, approves
CAROL = "carol-token-0123456789ab"  # web:carol: approves db.* actions only
MALLORY = "mallory-token-0123456789"  # api:mallory: has a token, may not ask through MCP
TOKENS = {CI: "api:ci-bot", ALICE: "web:alice", CAROL: "web:carol", MALLORY: "api:mallory"}

TOOLS = """\
[groups]
oncall = ["web:alice", "cli:dana"]
agents = ["api:ci-bot", "cli:agent"]

[mcp_server]
callers = ["group:agents"]
channel = "{channel}"
conversation = "{conversation}"
notify = {notify}

[[mcp_server.policies]]
actions = ["db.*"]
approvers = ["web:carol"]
expires_in = 600
"""


def tools_file(tmp_path: Path, channel: str = "web", conversation: str = "mcp", notify: str = "[]") -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(TOOLS.format(channel=channel, conversation=conversation, notify=notify))
    return path


@dataclass
class Progress:
    """Records the progress notifications of one call."""

    seen: list[tuple[float, str | None]] = field(default_factory=list)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, message))


@dataclass
class Bot:
    """The HTTP server of one core, a worker taking its inbox, and a REST client."""

    url: str
    harness: Harness
    session: aiohttp.ClientSession

    async def pending(self, action: str = "") -> ApprovalRecord:
        """The one pending approval (of `action`), once the worker has opened it."""

        async def found() -> ApprovalRecord | None:
            records = await self.harness.wiring.store.pending_approvals()
            return next((r for r in records if r.tool.endswith(action)), None)

        record = await eventually(found, f"a pending approval for {action or 'any action'}")
        assert record is not None
        return record

    async def decide(self, approval_id: str, decision: str, comment: str = "", token: str = ALICE) -> int:
        body = {"decision": decision, "comment": comment}
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.post(
            f"{self.url}/v1/approvals/{approval_id}/decision", json=body, headers=headers
        ) as response:
            return response.status


@contextlib.asynccontextmanager
async def running_bot(harness: Harness, **mcp: Any) -> AsyncIterator[Bot]:
    """`bot serve` in-process: the app on 127.0.0.1 port 0 with its worker; all stopped after."""
    app = build_app(harness.wiring, tokens=TOKENS, mcp=McpSettings(**({"progress_seconds": 0.2} | mcp)))
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(serve(app, "127.0.0.1", 0, bound.set_result, stop))
    worker = harness.wiring.worker("mcp-test-worker")
    working = asyncio.create_task(worker.run(block_ms=50))
    try:
        await asyncio.wait({serving, bound}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert bound.done(), "the HTTP server did not start"
        async with aiohttp.ClientSession() as session:
            yield Bot(bound.result(), harness, session)
    finally:
        worker.stop()
        await working
        stop.set()
        await serving


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """The SDK's client on `/mcp`, speaking with `token`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def stdio_env(redis_url: str, tmp_path: Path, tools: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_") and k not in ("REDIS_URL",)}
    return env | {
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(tmp_path / "data"),
        "BOT_TOOLS_FILE": str(tools),
        "BOT_MCP_IDENTITY": "cli:agent",
        "BOT_MCP_PROGRESS_SECONDS": "0.2",
        "BOT_CLAIM_IDLE_MS": "1500",
        "BOT_LOCK_TTL_MS": "1500",
        **extra,
    }


@contextlib.asynccontextmanager
async def stdio_session(env: dict[str, str], *args: str) -> AsyncIterator[ClientSession]:
    """A `bot mcp` subprocess (with `args`, e.g. --worker) driven by the SDK's stdio client."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "bot", "mcp", *args], env=env, cwd=REPO_ROOT)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session
