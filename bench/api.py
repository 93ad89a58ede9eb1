#!/usr/bin/env python
"""The HTTP perimeter of `bot serve`: API requests/s, and the web process's memory under huge uploads.

    python bench/api.py [--seconds 5] [--repeat 3] [--concurrency 16] [--checkout PATH] [--baseline PATH]
                        [--nodelay] [--worker] [--profile DIR] [--uploads 100 --upload-mb 50]

The server is a separate process (so the client does not take its event loop): what `bot serve`
runs (`commands.serve(..., http=True)`: the FastAPI app on uvicorn, the rate limits in Redis),
without its worker unless `--worker`, so only the perimeter is measured. It runs from
`--checkout` (default: this one) with cwd and PYTHONPATH there and this venv's Python, on port 0;
its URL is read from what it prints. Redis is an own redis-server in a temp dir (append-only
file on, as the embedded one), one database per checkout, stopped at the end. `--nodelay` sets
TCP_NODELAY on the server's listening socket (see RUNNER); `--profile DIR` runs the servers
under cProfile and prints where the project's code spends its time.

1. Throughput, for `POST /v1/threads` (`{"text": "status api"}`, a valid token) and for
   `GET /v1/threads?limit=50` with 10 000 threads stored: C concurrent requests on keep-alive
   connections (aiohttp) for S seconds after a second of warm-up. The rate limits are on but set
   to 1 000 000/minute, so their cost is counted and nothing is refused. The 10 000 threads are one
   real thread (`agent.handle` of the same message, as a worker leaves it) copied with new ids:
   its meta hash and its entry in `keys.THREAD_INDEX`, which is all the listing reads.
   Per round: requests/s, latency p50/p99, the server's CPU per request (/proc/<pid>/stat).
2. `--baseline PATH`: the same against another checkout (e.g. a worktree of an older commit),
   rounds interleaved after, before, after, before ...; prints after/before per figure, as the
   ratio of the medians and the median of the per-round ratios. The target (the issue: limits
   and authorization cost at most 10%) is judged on the server's CPU per request, which a noisy
   machine moves far less than requests/s, and on requests/s.
3. Memory: a fresh server per case; its RSS idle, then N concurrent chunked uploads to
   `POST /v1/threads` (64 KiB chunks up to 50 MB each) with an invalid token, then with a valid
   one; the peak RSS (VmRSS every 50 ms, and VmHWM reset before), the delta (target <= 50 MB) and
   the outcomes (status codes, connection errors). A server whose RSS passes `--rss-cap-mb` is
   killed: a checkout that buffers whole bodies would otherwise take 5 GB of a shared machine.

Report only: the exit status is 0 unless the setup fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pstats
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp
import redis.asyncio as aioredis

from bench.load import RedisProcess, cpu_seconds, machine_busy_seconds, own_cpu_seconds, stop_process
from bot.main import build_wiring
from config.settings import Settings
from core.domain.events import MessageTrigger
from core.domain.ids import new_id, thread_id_for
from core.domain.reducer import ThreadState
from core.redis import keys

TOKEN = "bench-token-0123456789abcdef"
IDENTITY = "web:bench"
WRONG_TOKEN = "wrong-token-0123456789abcdef"
UNLIMITED_RATE = "1000000/minute"  # on, so counted, but never reached
LAUNCH_BODY = json.dumps({"text": "status api"}).encode()
LIST_PATH = "/v1/threads?limit=50"
CHUNK = b"x" * 64 * 1024
MB = 1024 * 1024
TARGET_COST = 1.10  # the issue: limits and authorization cost at most 10% (after/before)
TARGET_DELTA_MB = 50.0
START_SECONDS = 30.0
SAMPLE_SECONDS = 0.05
PROFILE_LINES = 25

# `bot serve` (`bot/cli.py`), with its worker only for --worker: a web process as in production. --nodelay
# sets TCP_NODELAY on the listening socket, which the connections inherit: `bot/http/app.py:_listen` makes it
# with proto 0, so asyncio does not set it and each response after a connection's first waits ~40 ms for
# the client's delayed ACK (Nagle).
RUNNER = """
import asyncio, os, signal, socket, sys
from bot import subcommands as commands
from bot.http import app as http
from config.settings import Settings

if os.environ.get("BENCH_NODELAY"):
    listen = http._listen

    def _listen(host, port):
        sock = listen(host, port)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    http._listen = _listen


async def main():
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    worker = bool(os.environ.get("BENCH_WORKER"))
    return await commands.serve(Settings.from_env(os.environ), stop, worker=worker, channels=False, http=True)

sys.exit(asyncio.run(main()))
"""


@dataclass(frozen=True)
class Mode:
    """How the servers run (the command-line switches)."""

    worker: bool = False
    nodelay: bool = False
    profile: Path | None = None  # a directory: cProfile the servers, one <name>.prof each


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no {field_name}")


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS, so VmHWM is the peak from now on (procfs: does not block)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# --- the server ---------------------------------------------------------------------------


@dataclass
class Checkout:
    name: str  # "after" / "before"
    path: Path
    redis_url: str


class Server:
    """One web process from a checkout, on port 0; `url` is what it printed."""

    def __init__(self, checkout: Checkout, tmp: Path, mode: Mode) -> None:
        self.checkout = checkout
        self.dir = tmp / f"server-{checkout.name}"
        self.dir.mkdir(exist_ok=True)
        self.mode = mode
        self.profile = mode.profile / f"api-{checkout.name}.prof" if mode.profile else None
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_") and k != "ANTHROPIC_API_KEY"}
        return env | {
            "PYTHONPATH": str(self.checkout.path),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": self.checkout.redis_url,
            "BOT_DATA_DIR": str(self.dir / "data"),
            "BOT_HTTP_HOST": "127.0.0.1",
            "BOT_HTTP_PORT": "0",
            "BOT_API_TOKENS": f"{TOKEN}={IDENTITY}",
            "BOT_RATE_ADDRESS": UNLIMITED_RATE,
            "BOT_RATE_IDENTITY": UNLIMITED_RATE,
            "BOT_RATE_LAUNCH": UNLIMITED_RATE,
            "BOT_LOG_LEVEL": "WARNING",
            "BENCH_WORKER": "1" if self.mode.worker else "",
            "BENCH_NODELAY": "1" if self.mode.nodelay else "",
        }

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        runner = self.dir / "runner.py"
        runner.write_text(RUNNER)
        profiling = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        argv = [sys.executable, *profiling, str(runner)]
        out, err = self.dir / "stdout.log", self.dir / "stderr.log"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.checkout.path,
                env=self._env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_SECONDS
        while not self.url:
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise SystemExit(f"the {self.checkout.name} server did not start:\n{err.read_text()[-3000:]}")
            for line in out.read_text().splitlines():
                if line.startswith("REST API: "):
                    self.url = line.removeprefix("REST API: ").split()[0].removesuffix("/v1")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await stop_process(self.process)


async def seed(url: str, count: int, data_dir: Path) -> None:
    """`count` threads as the API and a worker leave them: one real thread, its meta hash copied with new ids."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
        settings = Settings.from_env({"BOT_DATA_DIR": str(data_dir), "BOT_LOG_LEVEL": "WARNING"})
        wiring = build_wiring(settings, {"PATH": os.environ.get("PATH", "")}, client)
        conversation = f"api/{new_id()}"
        thread_id = thread_id_for("api", conversation)
        trigger = MessageTrigger(
            id=new_id(),
            channel="api",
            conversation=conversation,
            sender=IDENTITY,
            text="status api",
            thread_id=thread_id,
        )
        await wiring.threads.handle(trigger)
        meta: dict[Any, Any] = await client.hgetall(keys.thread_meta(thread_id))
        state = ThreadState.model_validate_json(meta[b"state"])
        created = float(await client.zscore(keys.THREAD_INDEX, thread_id) or time.time())
        for start in range(0, count - 1, 1000):
            async with client.pipeline(transaction=False) as pipe:
                for n in range(start, min(start + 1000, count - 1)):
                    copy = f"api/seed-{n}"
                    tid = thread_id_for("api", copy)
                    stored = state.model_copy(update={"thread_id": tid, "conversation": copy})
                    pipe.hset(keys.thread_meta(tid), mapping={**meta, b"state": stored.model_dump_json()})
                    pipe.zadd(keys.THREAD_INDEX, {tid: created - (n + 1) * 0.001})
                await pipe.execute()
        if await client.zcard(keys.THREAD_INDEX) != count:
            raise SystemExit(f"seeded {await client.zcard(keys.THREAD_INDEX)} threads, not {count}")
    finally:
        await client.aclose()


# --- throughput -----------------------------------------------------------------------------


@dataclass
class Load:
    """One timed run of one request against one server."""

    ok: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    redis_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx only
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.ok / self.wall

    @property
    def cpu_per_request(self) -> float:
        return self.server_cpu / max(self.ok, 1)


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    body: bytes | None = None

    async def once(self, session: aiohttp.ClientSession, base: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with session.request(self.method, base + self.path, data=self.body, headers=headers) as response:
            return response.status, await response.read()


CALLS = (Call("POST /v1/threads", "POST", "/v1/threads", LAUNCH_BODY), Call(f"GET {LIST_PATH}", "GET", LIST_PATH))


async def hammer(
    session: aiohttp.ClientSession, server: Server, call: Call, redis_pid: int, args: argparse.Namespace
) -> Load:
    """`args.concurrency` clients, each one request at a time, for a second of warm-up then `args.seconds`."""
    load = Load()
    loop = asyncio.get_running_loop()
    stop_at = 0.0

    async def client() -> None:
        while loop.time() < stop_at:
            started = time.perf_counter()
            try:
                status, _ = await call.once(session, server.url)
            except aiohttp.ClientError as exc:
                load.statuses[type(exc).__name__] += 1
                continue
            load.statuses[str(status)] += 1
            if 200 <= status < 300:
                load.ok += 1
                load.latencies.append(time.perf_counter() - started)

    stop_at = loop.time() + 1.0  # warm-up: connections, caches
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    load.ok, load.latencies, load.statuses = 0, [], Counter()
    cpu, redis_cpu, own, machine = (
        cpu_seconds(server.pid),
        cpu_seconds(redis_pid),
        own_cpu_seconds(),
        machine_busy_seconds(),
    )
    started = time.perf_counter()
    stop_at = loop.time() + args.seconds
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    load.wall = time.perf_counter() - started
    load.server_cpu, load.client_cpu = cpu_seconds(server.pid) - cpu, own_cpu_seconds() - own
    load.redis_cpu = cpu_seconds(redis_pid) - redis_cpu
    load.machine_cpu = machine_busy_seconds() - machine
    return load


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_load(n: int, name: str, call: Call, load: Load) -> None:
    refused = {k: v for k, v in load.statuses.items() if not k.startswith("2")}
    print(
        f"round {n} {name:6} {call.name:27} {load.rate:7.1f} req/s | p50 {1000 * pct(load.latencies, 50):5.1f} ms, "
        f"p99 {1000 * pct(load.latencies, 99):5.1f} ms | server CPU {1000 * load.cpu_per_request:.2f} ms/req, "
        f"{load.server_cpu / load.wall:.2f} cores; redis-server {1000 * load.redis_cpu / max(load.ok, 1):.2f} ms/req; client {load.client_cpu / load.wall:.2f} cores; machine "
        f"{load.machine_cpu / load.wall:.2f} of {os.cpu_count()}" + (f" | not 2xx: {dict(refused)}" if refused else "")
    )


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


Figure = tuple[str, Callable[[Load], float], int]  # label, value, digits
FIGURES: tuple[Figure, ...] = (
    ("req/s", lambda load: load.rate, 1),
    ("server CPU ms/req", lambda load: 1000 * load.cpu_per_request, 2),
    ("redis-server CPU ms/req", lambda load: 1000 * load.redis_cpu / max(load.ok, 1), 3),
    ("p50 latency ms", lambda load: 1000 * pct(load.latencies, 50), 1),
)


def throughput_table(results: dict[str, dict[str, list[Load]]], names: list[str]) -> None:
    heads = [f"{name}: median (range)" for name in names] + (["after/before: of medians; per round"] * (len(names) > 1))
    print("\n| figure | " + " | ".join(heads) + " |\n|" + " --- |" * (len(heads) + 1))
    for call in CALLS:
        for label, value, digits in FIGURES:
            cells = [spread([value(load) for load in results[name][call.name]], digits) for name in names]
            if len(names) > 1:
                after, before = (results[name][call.name] for name in names)
                paired = [value(a) / value(b) for a, b in zip(after, before, strict=True)]
                ratio = statistics.median(value(a) for a in after) / statistics.median(value(b) for b in before)
                verdict = ""
                if label == "req/s":
                    verdict = f", target >= {1 / TARGET_COST:.3f}: {'PASS' if ratio >= 1 / TARGET_COST else 'FAIL'}"
                elif label == "server CPU ms/req":
                    verdict = f", target <= {TARGET_COST:.2f}: {'PASS' if ratio <= TARGET_COST else 'FAIL'}"
                cells.append(f"{ratio:.3f}; {spread(paired, 3)}{verdict}")
            print(f"| {call.name} {label} | " + " | ".join(cells) + " |")


# --- memory ---------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """VmRSS of a process every 50 ms, in a thread so the uploads' event loop cannot delay it; kills it past `cap_kb`."""

    def __init__(self, pid: int, cap_kb: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.cap_kb = pid, cap_kb
        self.peak_kb = 0
        self.capped = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            except (OSError, ValueError):
                return
            if self.peak_kb > self.cap_kb and not self.capped:
                self.capped = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.done.wait(SAMPLE_SECONDS)


@dataclass
class Flood:
    idle_kb: int
    peak_kb: int
    settled_kb: int
    capped: bool
    seconds: float
    outcomes: Counter[str]
    sent_mb: float  # mean per upload, what the client got to send

    @property
    def delta_mb(self) -> float:
        return (self.peak_kb - self.idle_kb) / 1024


async def upload(session: aiohttp.ClientSession, url: str, token: str, size: int, sent: list[int], n: int) -> str:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(CHUNK)):
            sent[n] += len(CHUNK)
            yield CHUNK

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        async with session.post(url + "/v1/threads", data=body(), headers=headers) as response:
            await response.read()
            return str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def flood(server: Server, token: str, uploads: int, size: int, cap_kb: int) -> Flood:
    async with aiohttp.ClientSession() as session:  # warm-up: the routes, the limiter, pydantic, Redis
        for call in CALLS:
            await call.once(session, server.url)
    await asyncio.sleep(1.0)
    idle = rss_kb(server.pid)
    reset_peak(server.pid)
    sampler = Sampler(server.pid, cap_kb)
    sampler.start()
    started, sent = time.perf_counter(), [0] * uploads
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            outcomes = await asyncio.gather(
                *(upload(session, server.url, token, size, sent, n) for n in range(uploads))
            )
        seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)
        with contextlib.suppress(OSError, ValueError):
            sampler.peak_kb = max(sampler.peak_kb, rss_kb(server.pid, "VmHWM"))
        settled = 0 if sampler.capped else rss_kb(server.pid)
    finally:
        sampler.done.set()
        sampler.join()
    mean_sent = sum(sent) / uploads / MB
    return Flood(idle, sampler.peak_kb, settled, sampler.capped, seconds, Counter(outcomes), mean_sent)


async def memory(checkouts: list[Checkout], args: argparse.Namespace, mode: Mode, tmp: Path) -> list[tuple[str, Flood]]:
    floods = []
    mode = dataclasses.replace(mode, profile=None)
    for _ in range(args.memory_repeat):
        for token, case in ((WRONG_TOKEN, "invalid token"), (TOKEN, "valid token")):
            for checkout in checkouts:
                server = Server(checkout, tmp, mode)
                try:
                    await server.start()
                    result = await flood(server, token, args.uploads, args.upload_mb * MB, args.rss_cap_mb * 1024)
                finally:
                    await server.stop()
                label = f"{checkout.name}, {case}"
                floods.append((label, result))
                peak = f"{result.peak_kb / 1024:.1f} MB" + (" (the cap: killed)" if result.capped else "")
                print(
                    f"{label:22} idle {result.idle_kb / 1024:.1f} MB, peak {peak}, delta {result.delta_mb:.1f} MB, "
                    f"1 s after {'killed' if result.capped else f'{result.settled_kb / 1024:.1f} MB'} | "
                    f"{result.seconds:.1f} s, client sent "
                    f"{result.sent_mb:.2f} MB per upload on average | outcomes {dict(result.outcomes)}"
                )
    return floods


def memory_table(floods: list[tuple[str, Flood]]) -> None:
    print(f"\n| case | idle RSS MB | peak RSS MB | delta MB, target <= {TARGET_DELTA_MB:g} | outcomes |")
    print("| --- | --- | --- | --- | --- |")
    for label in dict.fromkeys(label for label, _ in floods):
        runs = [flood for name, flood in floods if name == label]
        capped = any(run.capped for run in runs)
        deltas = [run.delta_mb for run in runs]
        verdict = "FAIL" if capped or statistics.median(deltas) > TARGET_DELTA_MB else "PASS"
        outcomes: Counter[str] = sum((run.outcomes for run in runs), Counter())
        print(
            f"| {label} | {spread([run.idle_kb / 1024 for run in runs])} | "
            f"{spread([run.peak_kb / 1024 for run in runs])}{' (cap reached)' if capped else ''} | "
            f"{spread(deltas)}: {verdict} | {dict(outcomes)} |"
        )


# --- the run --------------------------------------------------------------------------------


async def throughput(
    checkouts: list[Checkout], args: argparse.Namespace, mode: Mode, redis_pid: int, tmp: Path
) -> None:
    servers = [Server(checkout, tmp, mode) for checkout in checkouts]
    results: dict[str, dict[str, list[Load]]] = {c.name: {call.name: [] for call in CALLS} for c in checkouts}
    try:
        for server in servers:
            await server.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for server in servers:
                status, body = await CALLS[1].once(session, server.url)
                listed = len(json.loads(body)["threads"]) if status == 200 else status
                print(f"{server.checkout.name}: {server.url} (pid {server.pid}); GET {LIST_PATH} lists {listed}")
            for n in range(1, args.repeat + 1):
                for server in servers:  # interleaved: after, before, after, before ...
                    for call in CALLS:
                        load = await hammer(session, server, call, redis_pid, args)
                        results[server.checkout.name][call.name].append(load)
                        print_load(n, server.checkout.name, call, load)
    finally:
        for server in servers:
            await server.stop()
    throughput_table(results, [c.name for c in checkouts])
    for server in servers:
        if server.profile is not None:
            print(f"\n{server.profile}: the whole run (warm-ups, both requests); the project's code and `limits`:")
            own = f"^{server.checkout.path}/(bot|core|adapters|config)/|/limits/"
            pstats.Stats(str(server.profile)).sort_stats("cumulative").print_stats(own, PROFILE_LINES)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    redis = RedisProcess(tmp)
    await redis.start()
    assert redis.process is not None
    mode = Mode(worker=args.worker, nodelay=args.nodelay, profile=args.profile.resolve() if args.profile else None)
    if mode.profile is not None:
        mode.profile.mkdir(parents=True, exist_ok=True)
    try:
        paths = [("after", args.checkout)] + ([("before", args.baseline)] if args.baseline else [])
        checkouts = [Checkout(name, path, f"{redis.url}?db={db}") for db, (name, path) in enumerate(paths)]
        print(
            f"bench/api.py: {' and '.join(f'{c.name} = {c.path}' for c in checkouts)}; server: "
            f"bot serve {'with' if args.worker else 'without'} its worker"
            f"{', TCP_NODELAY set on its socket' if args.nodelay else ''}{', under cProfile' if args.profile else ''}; "
            f"{args.concurrency} concurrent requests, {args.seconds:g} s x {args.repeat} rounds; "
            f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
        )
        for checkout in checkouts:
            await seed(checkout.redis_url, args.threads, tmp / f"seed-{checkout.name}")
        print(f"seeded {args.threads} threads per database")
        await throughput(checkouts, args, mode, redis.process.pid, tmp)
        print(f"load average {os.getloadavg()[0]:.2f}")
        if args.uploads:
            print(f"\nmemory: {args.uploads} concurrent chunked uploads of {args.upload_mb} MB in 64 KiB chunks")
            memory_table(await memory(checkouts, args, mode, tmp))
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        await redis.stop()


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def checkout_path(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "bot" / "http.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} has no bot/http/app.py; give a checkout of this project")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--checkout", type=checkout_path, default=ROOT, help="run the server from here (default: .)")
    parser.add_argument("--baseline", type=checkout_path, help="also a server from this checkout, interleaved")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per figure and round (5)")
    parser.add_argument("--repeat", type=positive, default=3, help="rounds (default 3)")
    parser.add_argument("--concurrency", type=positive, default=16, help="requests in flight (default 16)")
    parser.add_argument("--threads", type=positive, default=10_000, help="threads stored for the listing (10000)")
    parser.add_argument("--uploads", type=int, default=100, help="concurrent uploads; 0 skips the memory figure")
    parser.add_argument("--upload-mb", type=positive, default=50, help="size of each upload (default 50)")
    parser.add_argument("--memory-repeat", type=positive, default=2, help="fresh servers per memory case (2)")
    parser.add_argument("--rss-cap-mb", type=positive, default=3072, help="kill a server past this RSS (3072)")
    parser.add_argument("--worker", action="store_true", help="the server runs a worker too, as `bot serve` does")
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY on the server's listening socket")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile the servers into DIR/api-<name>.prof")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
