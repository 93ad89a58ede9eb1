#!/usr/bin/env python
"""Threads per second of one bot process: T threads of 10 steps, K in flight, each ending in an approval.

    python bench/throughput.py [--threads 200] [--in-flight 50] [--workers 8] [--repeat 3] [--redis-url URL --flush]

Each thread: a message -> the scripted model (no history, answers at once) calls an instant Python
tool 9 times, then a gated tool (approval required, allow_self false, the approver a second
identity) -> the approval request appears on the channel's outbox -> this script, as the approver,
publishes the approval at once (a DecisionTrigger naming its thread, as the API and the buttons
send it) -> the thread resumes, runs the gated tool and replies. Everything takes the real path:
triggers go to the inbox with `Bus.publish`, W `Worker.run` loops in this process take them (one of
them sweeps, as in `bot worker`), and the script reads the outbox with `Bus.follow`. K threads are
in flight at once: a new one starts when one replies.

For each of `--repeat` rounds it prints threads/s and steps/s (T / wall time from the first
message to the last reply), the CPU of this process (workers and driver, `getrusage`) and of
redis-server (`INFO cpu`) per step, and the median legs message -> approval request and
approve -> reply; then the medians and ranges against the target. The exit status is 0 only when
the median reaches the target.

Redis is an embedded redis-server in a temp dir (stopped at the end), or `--redis-url` for a
dedicated, empty database (`--flush` empties it first; it is emptied again at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if __name__ == "__main__":  # the tools file names `bench.throughput:instant`: let it resolve to this module
    sys.modules.setdefault("bench.throughput", sys.modules["__main__"])

import redis.asyncio as aioredis

from bot.main import Wiring, build_wiring
from bot.redis_server import EmbeddedRedis
from config.settings import Settings
from core.domain.events import ApprovalRequest, DecisionTrigger, MessageTrigger, Reply
from core.domain.ids import new_id
from core.model.function import FunctionModel
from core.model.llm import Choice, ModelRequest
from core.runtime.worker import Worker

REQUESTER = "cli:bench"
APPROVER = "cli:approver"
STEPS = 10  # per thread: STEPS - 1 instant calls, then the gated one
TARGET_THREADS_PER_SECOND = 100.0
REFERENCE = "the issue: 67 threads/s measured on this machine; LangGraph with its Redis checkpointer does 9"
DEADLINE_SECONDS = 120.0

TOOLS_TOML = """
[groups]
approvers = ["cli:approver"]

[tools.instant]
description = "A no-op that returns at once."
idempotent = true
timeout = 10
executor = { kind = "python", target = "bench.throughput:instant" }
parameters = { type = "object", required = ["n"], additionalProperties = false, properties.n = { type = "integer" } }

[tools.gated]
description = "A no-op that needs approval from someone else."
timeout = 10
executor = { kind = "python", target = "bench.throughput:gated" }
approval = { required = true, approvers = ["group:approvers"], allow_self = false, expires_in = 3600 }
parameters = { type = "object", required = ["target"], additionalProperties = false, properties.target = { type = "string" } }
"""


async def instant(n: int = 0) -> str:
    return "ok"


async def gated(target: str = "") -> str:
    return f"shipped {target}"


def ten_steps(request: ModelRequest) -> Choice:
    """Calls `instant` until the turn has STEPS - 1 tool calls, then `gated`; once that ran, replies."""
    state = request.state
    if state.last_call is not None and state.last_call.tool == "gated":
        return Choice(tool="reply", args={"message": f"{state.turn_steps} steps done"})
    if state.turn_steps < STEPS - 1:
        return Choice(tool="instant", args={"n": state.turn_steps}, reason="bench step")
    return Choice(tool="gated", args={"target": "production"}, reason="bench gated step")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def redis_cpu_seconds(client: aioredis.Redis) -> float:
    info: dict[str, Any] = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class Round:
    threads: int
    wall: float = 0.0
    cpu: float = 0.0  # this process: the worker loops and the driver
    redis_cpu: float = 0.0
    to_request: list[float] = field(default_factory=list)  # seconds, message published -> approval request read
    to_reply: list[float] = field(default_factory=list)  # seconds, approval published -> reply read

    @property
    def rate(self) -> float:
        return self.threads / self.wall

    @property
    def steps(self) -> int:
        return self.threads * STEPS


class Driver:
    """T people sending one message each, K at a time, and one approver answering every request at once."""

    def __init__(self, wiring: Wiring, channel: str, threads: int, in_flight: int) -> None:
        self.bus = wiring.bus
        self.channel = channel
        self.threads = threads
        self.in_flight = in_flight
        self.run_id = new_id()[-6:]
        self.sent: dict[str, float] = {}  # conversation -> when its message was published
        self.requested: dict[str, float] = {}
        self.approved: dict[str, float] = {}
        self.replied: dict[str, float] = {}

    async def _start(self) -> None:
        conversation = f"throughput-{self.run_id}/{len(self.sent)}"
        self.sent[conversation] = time.perf_counter()
        trigger = MessageTrigger(
            id=new_id(), channel=self.channel, conversation=conversation, sender=REQUESTER, text="run the bench"
        )
        await self.bus.publish(trigger)

    async def _approve(self, request: ApprovalRequest) -> None:
        self.requested[request.conversation] = time.perf_counter()
        decision = DecisionTrigger(
            id=new_id(),
            channel=self.channel,
            conversation=request.conversation,
            sender=APPROVER,
            approval_id=request.approval_id,
            decision="approve",
            thread_id=request.thread_id,
        )
        self.approved[request.conversation] = time.perf_counter()
        await self.bus.publish(decision)

    async def drive(self) -> None:
        after = await self.bus.position(self.channel)
        for _ in range(min(self.in_flight, self.threads)):
            await self._start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self.replied) < self.threads:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.replied)} of {self.threads} threads replied in {DEADLINE_SECONDS:g}s")
            after, outbound = await self.bus.follow(self.channel, after, block_ms=1000)
            for item in outbound:
                if item.conversation not in self.sent:
                    continue
                if isinstance(item, ApprovalRequest):
                    await self._approve(item)
                elif isinstance(item, Reply) and item.final and item.conversation in self.approved:
                    self.replied[item.conversation] = time.perf_counter()
                    if len(self.sent) < self.threads:
                        await self._start()


async def one_round(wiring: Wiring, channel: str, threads: int, in_flight: int) -> Round:
    driver = Driver(wiring, channel, threads, in_flight)
    cpu, redis_cpu = own_cpu_seconds(), await redis_cpu_seconds(wiring.redis)
    await driver.drive()
    result = Round(threads, cpu=own_cpu_seconds() - cpu, redis_cpu=await redis_cpu_seconds(wiring.redis) - redis_cpu)
    result.wall = max(driver.replied.values()) - min(driver.sent.values())
    for conversation, sent in driver.sent.items():
        result.to_request.append(driver.requested[conversation] - sent)
        result.to_reply.append(driver.replied[conversation] - driver.approved[conversation])
    return result


def spread(values: list[float], unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    scaled = [v * scale for v in values]
    return (
        f"median {statistics.median(scaled):.{digits}f}{unit} (range {min(scaled):.{digits}f}-{max(scaled):.{digits}f})"
    )


def print_round(n: int, r: Round) -> None:
    print(
        f"round {n}: {r.threads} threads in {r.wall:.2f} s = {r.rate:.1f} threads/s, {r.steps / r.wall:.0f} steps/s | "
        f"CPU per step: this process {1000 * r.cpu / r.steps:.3f} ms, redis-server {1000 * r.redis_cpu / r.steps:.3f} ms"
        f" | p50 message -> approval request {1000 * statistics.median(r.to_request):.0f} ms, "
        f"approve -> reply {1000 * statistics.median(r.to_reply):.0f} ms"
    )


def summary(rounds: list[Round]) -> bool:
    rate = statistics.median(r.rate for r in rounds)
    passed = rate >= TARGET_THREADS_PER_SECOND
    verdict = "PASS" if passed else "FAIL"
    print(f"threads/s: {spread([r.rate for r in rounds])}; target >= {TARGET_THREADS_PER_SECOND:g}: {verdict}")
    print(f"steps/s: {spread([r.steps / r.wall for r in rounds], digits=0)}")
    print(f"process CPU per step, user+sys: {spread([r.cpu / r.steps for r in rounds], ' ms', 1000, 3)}")
    print(f"redis-server CPU per step: {spread([r.redis_cpu / r.steps for r in rounds], ' ms', 1000, 3)}")
    print(f"reference, {REFERENCE}")
    return passed


async def run(args: argparse.Namespace, url: str, where: str, data_dir: Path) -> bool:
    tools_file = data_dir / "tools.toml"
    tools_file.write_text(TOOLS_TOML)
    settings = Settings.from_env(
        {
            "BOT_DATA_DIR": str(data_dir / "data"),
            "BOT_TOOLS_FILE": str(tools_file),
            "BOT_LOG_LEVEL": "WARNING",
            "BOT_RATE_MODEL": "off",  # a scripted model costs nothing: no budget to spend (one round trip a call)
        }
    )
    client = aioredis.Redis.from_url(url, health_check_interval=30)  # as bot.main.running_core does
    try:
        if args.redis_url and args.flush:
            await client.flushdb()
        elif args.redis_url and await client.dbsize():
            raise SystemExit(f"{where} is not empty; give a dedicated database, or --flush to empty it")
        wiring = build_wiring(
            settings, {"PATH": os.environ.get("PATH", "")}, client, language_model=FunctionModel(ten_steps)
        )
        workers = [wiring.worker(), *(Worker(wiring.threads, wiring.bus) for _ in range(args.workers - 1))]
        tasks = [asyncio.create_task(worker.run(block_ms=200)) for worker in workers]
        channel = f"bench-{new_id()[-8:]}"
        print(
            f"bench/throughput.py: {args.threads} threads x {STEPS} steps ({STEPS - 1} instant + 1 gated, approved at "
            f"once), {args.in_flight} in flight, {args.workers} Worker.run loops in one process; path: Bus.publish -> "
            f"inbox -> Worker.run -> outbox -> Bus.follow; Redis {where}; {os.cpu_count()} cores; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        try:
            await one_round(wiring, channel, min(args.threads, 2 * args.in_flight), args.in_flight)  # warm-up
            rounds = []
            for n in range(1, args.repeat + 1):
                rounds.append(await one_round(wiring, channel, args.threads, args.in_flight))
                print_round(n, rounds[-1])
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks)
        passed = summary(rounds)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        if args.redis_url:
            await client.flushdb()
        return passed
    finally:
        await client.aclose()


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--threads", type=positive, default=200, help="threads per round (default 200)")
    parser.add_argument("--in-flight", type=positive, default=50, help="threads in flight at once (default 50)")
    parser.add_argument("--workers", type=positive, default=8, help="Worker.run loops in this process (default 8)")
    parser.add_argument("--repeat", type=positive, default=3, help="measured rounds (default 3)")
    parser.add_argument("--redis-url", default=None, help="a dedicated, empty Redis database (default: embedded)")
    parser.add_argument("--flush", action="store_true", help="empty --redis-url's database first")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="throughput-"))
    embedded: EmbeddedRedis | None = None
    try:
        url, where = args.redis_url, (args.redis_url or "").split("@")[-1]
        if not url:
            embedded = EmbeddedRedis(tmp / "redis")
            url, where = embedded.start(), "embedded redis-server in a temp dir (append-only file on)"
        passed = asyncio.run(run(args, url, where, tmp))
    finally:
        if embedded is not None:
            embedded.stop_if_last()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
