#!/usr/bin/env python
"""The whole bot under load: T concurrent threads through W `bot worker` processes on one Redis.

    python bench/load.py [--threads 1000] [--workers 1,2,4] [--redis-url URL --flush]

Each thread is one approval round trip, all slash commands, so the model is the deterministic
`CommandModel` (no LLM, nothing to subtract): the message `/ship tN` -> the gated tool call and
its approval request on `outbox:cli` -> this script, as the approver, answers `approve <id>` the
moment it reads the request -> the approved tool (`bench.load:instant`, a Python callable that
returns at once: no subprocess per call) runs -> the reply on `outbox:cli`.

All T messages are published at once (one pipeline), then the script answers approvals as they
appear. For each W it prints threads/s, p50/p99 from the message to the final reply (both ends
timed by Redis: the inbox and outbox stream ids), the two legs (message -> approval request,
approve -> reply), Redis commands per thread (`INFO commandstats`, all clients) and the CPU
seconds of redis-server, the workers and this driver (`/proc/<pid>/stat`), to say whether
Redis or the CPU was the limit.

Redis is an own redis-server (append-only file on, like the embedded one) in a temp dir,
flushed between rounds and stopped at the end; or `--redis-url` for a dedicated, empty
database (`--flush` empties it first). Run it on a quiet machine: the header prints the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis

from bot.redis_server import RedisServer
from core.domain.errors import ConfigError
from core.domain.events import OUTBOUND_ADAPTER, ApprovalRequest, MessageTrigger, Reply
from core.domain.ids import new_id, thread_id_for
from core.redis import keys

APPROVER = "cli:approver"
DEADLINE_SECONDS = 90.0
UNLOADED_THREADS = 20
TOOLS_TOML = """
[groups]
approvers = ["cli:approver"]

[tools.ship]
description = "Ship a target; instant, and it needs approval."
executor = { kind = "python", target = "bench.load:instant" }
approval = { required = true, approvers = ["group:approvers"], allow_self = false, expires_in = 3600 }
parameters = { type = "object", required = ["target"], additionalProperties = false, properties.target = { type = "string" } }
"""


async def instant(target: str) -> str:
    """The gated tool: returns at once, so the core is what is measured."""
    return f"shipped {target}"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine used so far, summed over cores (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stream_ms(entry_id: bytes | str) -> int:
    """The server's clock when the entry was added (the first half of a stream id)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0])


# --- processes -------------------------------------------------------------------------------


class RedisProcess:
    """The project's redis-server (bot/redis_server.py: append-only file on, unix socket, as the embedded
    one), run as this script's child; started and stopped off the event loop (bench/api.py uses it too)."""

    def __init__(self, directory: Path) -> None:
        self.server = RedisServer(directory)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.server.process

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.server.start)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from exc

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)


@dataclass
class Workers:
    processes: list[asyncio.subprocess.Process]
    logs: list[Path]

    @classmethod
    async def start(cls, count: int, env: dict[str, str], logdir: Path) -> Workers:
        processes, logs = [], []
        for n in range(count):
            log = logdir / f"worker-{n}.log"
            argv = [sys.executable, "-m", "bot", "worker"]
            with log.open("wb") as err:
                quiet = asyncio.subprocess.DEVNULL
                process = await asyncio.create_subprocess_exec(
                    *argv, cwd=ROOT, env=env, stdin=quiet, stdout=quiet, stderr=err, start_new_session=True
                )
            processes.append(process)
            logs.append(log)
        return cls(processes, logs)

    async def ready(self) -> None:
        """Every worker has logged that it started."""
        for _ in range(1500):
            self.check_alive()
            if all(b" started" in log.read_bytes() for log in self.logs):
                return
            await asyncio.sleep(0.02)
        raise SystemExit("the workers did not start within 30 s")

    def check_alive(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.returncode is not None:
                raise SystemExit(f"a worker exited with {process.returncode}:\n{log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    async def stop(self) -> None:
        await asyncio.gather(*(stop_process(process) for process in self.processes))


async def stop_process(process: asyncio.subprocess.Process | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to its process group after `grace` seconds; nothing if it has ended.
    Every bench's server and worker processes stop this way."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


# --- one round ------------------------------------------------------------------------------


@dataclass
class Round:
    workers: int
    threads: int
    wall: float = 0.0  # seconds from the first message to the last reply (server clock)
    latencies: list[float] = field(default_factory=list)  # ms, message -> final reply, per thread
    unloaded: list[float] = field(default_factory=list)  # ms, the same for threads run one at a time
    to_request: list[float] = field(default_factory=list)  # ms, message -> approval request
    to_reply: list[float] = field(default_factory=list)  # ms, approve -> reply
    commands: Counter[str] = field(default_factory=Counter)
    driver_commands: int = 0
    redis_cpu: float = 0.0
    workers_cpu: float = 0.0
    driver_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine, ours included
    span: float = 0.0  # seconds the CPU figures cover (this process's clock)

    @property
    def rate(self) -> float:
        return self.threads / self.wall


class Driver:
    """Publishes the messages and answers every approval request, like T people and one approver."""

    def __init__(self, client: aioredis.Redis, threads: int) -> None:
        self.client = client
        self.threads = threads
        self.run = new_id()[-6:]
        self.sent: dict[str, int] = {}  # thread id -> ms the message entered the inbox
        self.requested: dict[str, int] = {}
        self.approved: dict[str, int] = {}
        self.replied: dict[str, int] = {}
        self.commands = 1  # its own, for the workers' share: XREVRANGE, then the XADDs and XREADs below

    async def _enqueue(self, triggers: list[tuple[str, MessageTrigger]]) -> list[tuple[str, int]]:
        """What `Bus.publish` does for a trigger without a dedup key (one XADD), pipelined, keeping the ids."""
        async with self.client.pipeline(transaction=False) as pipe:
            for _, trigger in triggers:
                pipe.xadd(keys.INBOX, {"t": trigger.model_dump_json()})
            ids = await pipe.execute()
        self.commands += len(triggers)
        return [(thread_id, stream_ms(entry_id)) for (thread_id, _), entry_id in zip(triggers, ids, strict=True)]

    def _message(self, n: int, text: str, sender: str) -> tuple[str, MessageTrigger]:
        conversation = f"load-{self.run}/{n}"
        trigger = MessageTrigger(id=new_id(), channel="cli", conversation=conversation, sender=sender, text=text)
        return thread_id_for("cli", conversation), trigger

    async def drive(self) -> None:
        after: Any = await self.client.xrevrange(keys.outbox("cli"), count=1)
        position = after[0][0] if after else b"0-0"
        numbered: dict[str, int] = {}
        messages = [self._message(n, f"/ship t{n}", f"cli:user{n}") for n in range(self.threads)]
        for n, (thread_id, _) in enumerate(messages):
            numbered[thread_id] = n
        self.sent.update(await self._enqueue(messages))
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self.replied) < self.threads:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.replied)} of {self.threads} threads replied in {DEADLINE_SECONDS:g}s")
            fresh: Any = await self.client.xread({keys.outbox("cli"): position}, count=1000, block=1000)
            self.commands += 1
            approvals = []
            for _, entries in fresh or []:
                for entry_id, fields in entries:
                    position = entry_id
                    outbound = OUTBOUND_ADAPTER.validate_json(fields[b"o"])
                    if outbound.thread_id not in numbered:
                        continue
                    if isinstance(outbound, ApprovalRequest):
                        self.requested[outbound.thread_id] = stream_ms(entry_id)
                        n = numbered[outbound.thread_id]
                        approvals.append(self._message(n, f"approve {outbound.approval_id}", APPROVER))
                    elif isinstance(outbound, Reply) and outbound.thread_id in self.approved:
                        self.replied[outbound.thread_id] = stream_ms(entry_id)
            if approvals:
                self.approved.update(await self._enqueue(approvals))


@dataclass
class Snapshot:
    """Counters at one moment; a round's figures are the differences between two."""

    commands: Counter[str]
    redis_cpu: float
    workers_cpu: float
    driver_cpu: float
    machine_cpu: float
    at: float

    @classmethod
    async def take(cls, client: aioredis.Redis, server: RedisProcess | None, workers: Workers) -> Snapshot:
        stats: dict[str, Any] = await client.info("commandstats")
        commands = Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})
        del commands["info"]  # the bench's own
        if server is not None and server.process is not None:
            redis_cpu = cpu_seconds(server.process.pid)
        else:
            info: dict[str, Any] = await client.info("cpu")
            redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return cls(
            commands, redis_cpu, workers.cpu_seconds(), own_cpu_seconds(), machine_busy_seconds(), time.monotonic()
        )


async def one_round(
    client: aioredis.Redis, server: RedisProcess | None, count: int, threads: int, env: dict[str, str], tmp: Path
) -> Round:
    await client.flushdb()
    workers = await Workers.start(count, env, tmp)
    try:
        await workers.ready()
        await Driver(client, 2 * count).drive()  # warm-up: imports, compiled schemas, connections
        alone: list[float] = []
        for _ in range(UNLOADED_THREADS):  # one thread at a time: the latency without queueing
            single = Driver(client, 1)
            await single.drive()
            alone += [single.replied[t] - sent for t, sent in single.sent.items()]
        before = await Snapshot.take(client, server, workers)
        driver = Driver(client, threads)
        await driver.drive()
        after = await Snapshot.take(client, server, workers)
        workers.check_alive()
    finally:
        await workers.stop()
    result = Round(count, threads, unloaded=alone, commands=after.commands - before.commands)
    result.driver_commands = driver.commands
    result.redis_cpu = after.redis_cpu - before.redis_cpu
    result.workers_cpu = after.workers_cpu - before.workers_cpu
    result.driver_cpu = after.driver_cpu - before.driver_cpu
    result.machine_cpu = after.machine_cpu - before.machine_cpu
    result.span = after.at - before.at
    result.wall = (max(driver.replied.values()) - min(driver.sent.values())) / 1000
    for thread_id, sent in driver.sent.items():
        result.latencies.append(driver.replied[thread_id] - sent)
        result.to_request.append(driver.requested[thread_id] - sent)
        result.to_reply.append(driver.replied[thread_id] - driver.approved[thread_id])
    return result


# --- the report ------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_round(r: Round) -> None:
    per_thread = sum(r.commands.values()) / r.threads
    driver = r.driver_commands / r.threads
    top = ", ".join(f"{name} {calls / r.threads:.1f}" for name, calls in r.commands.most_common(8))
    ours = r.redis_cpu + r.workers_cpu + r.driver_cpu
    print(
        f"W={r.workers}: {r.threads} threads in {r.wall:.2f} s = {r.rate:.0f} threads/s | message -> reply "
        f"p50 {pct(r.latencies, 50):.0f} ms, p99 {pct(r.latencies, 99):.0f} ms | legs p50: message -> approval "
        f"request {pct(r.to_request, 50):.0f} ms, approve -> reply {pct(r.to_reply, 50):.0f} ms | one thread "
        f"at a time: p50 {pct(r.unloaded, 50):.0f} ms, p99 {pct(r.unloaded, 99):.0f} ms\n"
        f"     Redis commands per thread {per_thread:.1f} (workers {per_thread - driver:.1f}, driver {driver:.1f}); "
        f"by command, those inside Lua scripts included: {top}\n"
        f"     CPU seconds over {r.span:.2f} s: redis-server {r.redis_cpu:.2f} = {r.redis_cpu / r.span:.0%} of its "
        f"one thread; {r.workers} worker(s) {r.workers_cpu:.2f} = {r.workers_cpu / r.span:.2f} cores; driver "
        f"{r.driver_cpu:.2f}; machine {r.machine_cpu / r.span:.2f} of {os.cpu_count()} cores busy "
        f"({(r.machine_cpu - ours) / r.span:.2f} of them other processes)\n"
        f"     per thread: worker CPU {1000 * r.workers_cpu / r.threads:.2f} ms, "
        f"redis-server CPU {1000 * r.redis_cpu / r.threads:.2f} ms"
    )


def verdict(rounds: list[Round]) -> str:
    cores = os.cpu_count() or 1
    base = rounds[0]
    growth = ", ".join(f"W={r.workers} x{r.rate / base.rate:.2f}" for r in rounds[1:])
    lines = [f"throughput relative to W={base.workers}: {growth or 'one round only'}"]
    for r in rounds:
        machine, redis_share = r.machine_cpu / r.span, r.redis_cpu / r.span
        if redis_share >= 0.85:
            limit = f"Redis: its one thread was busy {redis_share:.0%} of the time"
        elif machine >= 0.85 * cores:
            limit = f"the CPU: {machine:.2f} of {cores} cores busy, redis-server only {redis_share:.0%} of one"
        elif r.workers_cpu / r.span >= 0.8 * r.workers:
            limit = f"the workers: each busy {r.workers_cpu / r.span / r.workers:.0%} of a core, more would help"
        else:
            limit = f"neither ({machine:.2f} of {cores} cores busy): round trips; more workers would help"
        lines.append(f"limit at W={r.workers}: {limit}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmpdir = Path(tmp)
        server = None if args.redis_url else RedisProcess(tmpdir)
        if server is not None:
            await server.start()
        url = args.redis_url or (server.url if server else "")
        client = aioredis.Redis.from_url(url)
        try:
            if args.redis_url and not args.flush and await client.dbsize():
                raise SystemExit(f"{url} is not empty; give a dedicated database, or --flush to empty it")
            (tmpdir / "tools.toml").write_text(TOOLS_TOML)
            env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_") and k != "ANTHROPIC_API_KEY"}
            tools = tmpdir / "tools.toml"
            env |= {"REDIS_URL": url, "BOT_TOOLS_FILE": str(tools), "BOT_DATA_DIR": tmp, "PYTHONUNBUFFERED": "1"}
            print(
                f"bench/load.py: {args.threads} threads (message -> gated tool -> approve -> reply) per round; "
                f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; Redis "
                f"{'at ' + url if args.redis_url else 'own redis-server, append-only file on'}"
            )
            rounds = []
            for count in args.workers:
                rounds.append(await one_round(client, server, count, args.threads, env, tmpdir))
                print_round(rounds[-1])
            print(verdict(rounds))
            print(f"load average at the end {os.getloadavg()[0]:.2f}")
        finally:
            await client.aclose()
            if server is not None:
                await server.stop()


def worker_counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,2,4, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, default=1000, help="concurrent threads per round (default 1000)")
    parser.add_argument("--workers", type=worker_counts, default=[1, 2, 4], help="worker counts, one round each")
    parser.add_argument("--redis-url", default=None, help="a dedicated Redis database instead of an own server")
    parser.add_argument("--flush", action="store_true", help="empty --redis-url's database first (and between rounds)")
    args = parser.parse_args(argv)
    if args.threads < 2:
        parser.error("--threads must be at least 2")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
