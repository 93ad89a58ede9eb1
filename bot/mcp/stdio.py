"""`bot mcp`: the MCP server on stdin/stdout, for a client that starts it (Claude Code, the inspector).

Its identity is BOT_MCP_IDENTITY (default the terminal's, `cli:<BOT_CLI_USER>`). It needs the bot's
Redis (REDIS_URL, or the embedded one in BOT_DATA_DIR) and a worker to open the requests: one of the
bot's processes (`bot serve`, `bot worker`, `bot run`), or this one with `--worker`. Logs go to stderr:
stdout carries only the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from bot.main import running_wiring, setup_logging
from bot.mcp.requests import Requests
from bot.mcp.server import build_server
from bot.mcp.settings import McpSettings
from config.settings import Settings
from core.tools.redact import Redactor

log = logging.getLogger("bot.mcp")


async def run_stdio(settings: Settings, stop: asyncio.Event, *, worker: bool) -> int:
    """Serve until the client closes stdin or the process is told to stop (SIGTERM, SIGINT)."""
    mcp_settings = McpSettings.from_env(os.environ, settings)
    setup_logging(settings, Redactor.from_env(os.environ), level="WARNING")  # stderr, like every log line
    async with running_wiring(settings) as wiring:
        requests = Requests(
            store=wiring.store, bus=wiring.bus, redis=wiring.redis, tools=wiring.tools, actions=wiring.actions
        )
        server = build_server(requests, mcp_settings, lambda ctx: mcp_settings.identity)
        runner = wiring.worker() if worker else None
        task = asyncio.create_task(runner.run(), name="worker") if runner is not None else None
        serving = asyncio.create_task(server.run_stdio_async(), name="mcp stdio")
        stopped = asyncio.create_task(stop.wait(), name="mcp stop")
        try:
            await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for part in (serving, stopped):
                part.cancel()
            await asyncio.gather(serving, stopped, return_exceptions=True)
            if runner is not None and task is not None:
                runner.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return 0
