#!/usr/bin/env python
"""From a decision on a channel to the waiting MCP client receiving it.

    python bench/mcp_decision.py [--decisions 30] [--runs 3] [--redis-url redis://...]

The bot runs as `bot serve` does, in this process: the HTTP server with `/mcp` on 127.0.0.1 port 0
and one worker, on a real Redis (an embedded redis-server in a temp dir unless `--redis-url`). The
client is the official SDK's streamable-HTTP client. Each round: the client calls `request_approval`
and waits; once the worker has opened the approval, the clock starts and an `approve <id>` message is
published to the inbox, as a chat channel does (the terminal's DecisionTrigger path); the clock stops
when the client's call returns the decision. That interval is the worker taking the trigger, the
decision's compare-and-set and commit, the MCP server waking on the thread's log (`XREAD BLOCK`) and
reading the approval record, and the response over SSE. Prints, per run, median, p99 and range in ms,
then the medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bot.http.app import build_app, serve
from bot.main import build_wiring
from bot.mcp.settings import McpSettings
from bot.redis_server import EmbeddedRedis
from config.settings import Settings
from core.domain import events as ev
from core.domain.ids import new_id

TOKEN = "bench-token-0123456789abcdef"
TOOLS = """\
[groups]
oncall = ["cli:approver"]

[mcp_server]
channel = "api"
conversation = "bench"
"""
WARMUP = 3


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(session: ClientSession, wiring: object, store: object, index: int) -> float:
    call = asyncio.create_task(
        session.call_tool("request_approval", {"action": "deploy", "arguments": {"n": index}, "reason": "bench"})
    )
    while True:  # the worker opens the card: poll until it is there (not timed)
        pending = [r for r in await store.pending_approvals() if r.args == {"n": index}]  # type: ignore[attr-defined]
        if pending:
            break
        await asyncio.sleep(0.005)
    trigger = ev.MessageTrigger(
        id=new_id(),
        channel="cli",
        conversation="approver/bench",
        sender="cli:approver",
        text=f"approve {pending[0].approval_id}",
    )
    started = time.perf_counter()
    await wiring.bus.publish(trigger)  # type: ignore[attr-defined]
    result = await call
    elapsed = (time.perf_counter() - started) * 1000
    assert result.structured_content and result.structured_content["status"] == "approved", result
    return elapsed


async def run(redis_url: str, decisions: int, scratch: Path) -> list[float]:
    tools = scratch / "tools.toml"
    await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(tools.write_text, TOOLS)
    env = {"BOT_DATA_DIR": str(scratch / "data"), "BOT_TOOLS_FILE": str(tools), "BOT_RATE_MODEL": "off"}
    settings = Settings.from_env(env)
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    wiring = build_wiring(settings, env, client)
    app = build_app(wiring, tokens={TOKEN: "api:bench"}, mcp=McpSettings(wait_seconds=60))
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(serve(app, "127.0.0.1", 0, bound.set_result, stop))
    worker = wiring.worker("bench")
    working = asyncio.create_task(worker.run(block_ms=1000))
    samples: list[float] = []
    try:
        url = await bound
        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for index in range(WARMUP + decisions):
                elapsed = await one(session, wiring, wiring.store, index)
                if index >= WARMUP:
                    samples.append(elapsed)
    finally:
        worker.stop()
        await working
        stop.set()
        await serving
        await client.aclose()
    return samples


async def main(decisions: int, runs: int, redis_url: str | None) -> None:
    embedded = None
    with tempfile.TemporaryDirectory() as scratch:
        if redis_url is None:
            embedded = EmbeddedRedis(Path(scratch) / "redis")
            redis_url = embedded.start()
        try:
            print(f"load average {os.getloadavg()[0]:.2f}; {decisions} decisions per run, {runs} runs")
            medians = []
            for number in range(1, runs + 1):
                samples = await run(redis_url, decisions, Path(scratch) / f"run{number}")
                medians.append(statistics.median(samples))
                print(
                    f"  run {number}: median {statistics.median(samples):6.2f} ms   p99 {quantile(samples, 0.99):6.2f} ms"
                    f"   range {min(samples):6.2f}-{max(samples):6.2f} ms"
                )
            print(
                f"decision -> MCP client: median of medians {statistics.median(medians):.2f} ms "
                f"(range {min(medians):.2f}-{max(medians):.2f}); load average {os.getloadavg()[0]:.2f}"
            )
        finally:
            if embedded is not None:
                embedded.stop_if_last()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # before the SDK's own INFO handler: only problems are printed
    asyncio.run(main(options.decisions, options.runs, options.redis_url))
