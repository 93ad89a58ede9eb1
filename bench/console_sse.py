#!/usr/bin/env python
"""From an approval being created to its card arriving on a console over Server-Sent Events.

    python bench/console_sse.py [--approvals 30] [--runs 3] [--consoles 1] [--redis-url redis://...]

The web process runs as `bot serve` does, in this process: the HTTP server on 127.0.0.1 port 0 with
`GET /web/live`, without a worker. The approvals are created by another core on its own Redis
connection (as a worker in another process does): `Threads.handle` of `/restart api production`
from a requester, which stores the approval record and commits the step with its approval request
on `outbox:api`. Each console is an HTTP client reading `/web/live` as the page does (the bearer
token in the header), signed in as an approver. The clock starts just before `handle` and stops when
every console has parsed the `approval` event for that approval; `handle` alone (the worker's share:
lease, command model, record, commit) is printed beside it, so the push's own share is the
difference. Redis is a real redis-server (embedded in a temp dir unless `--redis-url`).

Prints, per run, median, p99 and range in ms, then the medians over the runs. Target: under 300 ms.
Report only: the exit status is 0 unless the setup fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import redis.asyncio as aioredis

from bot.http.app import build_app, serve
from bot.main import build_wiring
from bot.redis_server import EmbeddedRedis
from config.settings import Settings
from core.domain import events as ev
from core.domain.ids import new_id, thread_id_for

TOKEN = "bench-console-token-0123456789"
WARMUP = 3
TARGET_MS = 300


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Console:
    """One console page's stream: the approval ids it has been shown, each with when it arrived."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        buffer = ""
        async for chunk in self.response.content.iter_any():
            buffer += chunk.decode().replace("\r\n", "\n")
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                lines = dict(
                    line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":")
                )
                if lines.get("event") == "approval":
                    self.arrived.setdefault(json.loads(lines["data"])["approval_id"], time.perf_counter())
                    self.changed.set()

    async def wait_for(self, approval_id: str) -> float:
        while approval_id not in self.arrived:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)
        return self.arrived[approval_id]


async def run(redis_url: str, approvals: int, consoles: int, scratch: Path) -> tuple[list[float], list[float]]:
    env = {"BOT_DATA_DIR": str(scratch / "data"), "BOT_RATE_MODEL": "off", "BOT_GROUP_ONCALL": "web:bench"}
    await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
    settings = Settings.from_env(env)
    web_redis, worker_redis = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    await web_redis.flushdb()
    web = build_wiring(settings, env, web_redis)  # the web process
    elsewhere = build_wiring(settings, env, worker_redis)  # a worker's core, on its own connection
    app = build_app(web, tokens={TOKEN: "web:bench"})
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(serve(app, "127.0.0.1", 0, bound.set_result, stop))
    pushed, handled = [], []
    try:
        url = await bound
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            pages = [Console(await http.get(f"{url}/web/live")) for _ in range(consoles)]
            for index in range(WARMUP + approvals):
                trigger = ev.MessageTrigger(
                    id=new_id(),
                    channel="api",
                    conversation=f"bench-{index}",
                    sender="cli:requester",
                    text="/restart api production",
                    thread_id=thread_id_for("api", f"bench-{index}"),
                )
                started = time.perf_counter()
                await elsewhere.threads.handle(trigger)
                committed = time.perf_counter()
                pending = (await elsewhere.store.load_state(trigger.thread_id)).pending_approval
                assert pending is not None, "the request did not wait for approval"
                arrivals = [await page.wait_for(pending.approval_id) for page in pages]
                if index >= WARMUP:
                    pushed.append((max(arrivals) - started) * 1000)
                    handled.append((committed - started) * 1000)
            for page in pages:
                page.reading.cancel()
                page.response.close()
    finally:
        stop.set()
        await serving
        await web_redis.aclose()
        await worker_redis.aclose()
    return pushed, handled


async def main(approvals: int, runs: int, consoles: int, redis_url: str | None) -> None:
    embedded = None
    with tempfile.TemporaryDirectory() as scratch:
        if redis_url is None:
            embedded = EmbeddedRedis(Path(scratch) / "redis")
            redis_url = embedded.start()
        try:
            print(
                f"load average {os.getloadavg()[0]:.2f}; {approvals} approvals per run, {consoles} console(s), {runs} runs"
            )
            medians, p99s = [], []
            for number in range(1, runs + 1):
                pushed, handled = await run(redis_url, approvals, consoles, Path(scratch) / f"run{number}")
                medians.append(statistics.median(pushed))
                p99s.append(quantile(pushed, 0.99))
                print(
                    f"  run {number}: created -> card median {statistics.median(pushed):6.2f} ms"
                    f"   p99 {quantile(pushed, 0.99):6.2f} ms   range {min(pushed):6.2f}-{max(pushed):6.2f} ms"
                    f"   (of which handle() median {statistics.median(handled):5.2f} ms)"
                )
            worst = max(p99s)
            print(
                f"created -> card over SSE: median of medians {statistics.median(medians):.2f} ms "
                f"(range {min(medians):.2f}-{max(medians):.2f}), worst p99 {worst:.2f} ms; target < {TARGET_MS} ms: "
                f"{'PASS' if worst < TARGET_MS else 'FAIL'}; load average {os.getloadavg()[0]:.2f}"
            )
        finally:
            if embedded is not None:
                embedded.stop_if_last()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--consoles", type=int, default=1)
    parser.add_argument("--redis-url", default=None)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(options.approvals, options.runs, options.consoles, options.redis_url))
