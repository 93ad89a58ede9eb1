#!/usr/bin/env python
"""The core's own cost per agent step, against a real Redis.

    python bench/core_step.py [--redis-url URL] [--lengths 10,100,1000] [--repeat N] [--resumes N] [--profile]

A scripted model (no history, answers at once) calls an instant Python tool N times, then
replies; so everything measured is the core itself: the reducer, pydantic, the snapshot, the
Lua appends and the Redis round trips. For threads of each length it prints:

- per step: wall time of `agent.handle(trigger)` for the whole N-step thread divided by N, and
  the marginal cost of one step (the time between two consecutive model choices), comparing
  the first 10% of the steps with the last 10% to show that it stays flat;
- resume: a thread of N steps that ends in a gated call (awaiting approval); the time from
  handing `agent.handle` the approval to the approved tool starting to execute (median);
- grant-matched call: the same thread ends in gated calls a standing grant covers (given with the first
  approval, `grant_for`); each runs without a card. Its step against an ungated step of the same thread,
  and the grant check alone (`Grants.match`: its time and round trips);
- quorum-2 approval: the same thread ends in a call needing 2 approvers of a group the requester is not
  in; the time from handing `agent.handle` the second approval (the one completing the quorum) to the
  tool starting, and its round trips, against the single-approval resume above;
- bytes stored per thread: `MEMORY USAGE` of the thread's log and meta keys against the sum of
  the events' JSON;
- Redis round trips and commands per step, counted on the client connection (a pipeline or an
  EVALSHA is one round trip), and the server's own command count (`INFO commandstats`, which
  includes the commands a Lua script runs).

Redis is REDIS_URL / --redis-url when given, otherwise an embedded redis-server in a temp dir,
stopped at the end. On a shared server the bench only touches its own keys and deletes them
afterwards (the server-side command counts then include other clients' traffic).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import itertools
import os
import platform
import pstats
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
# The tools file names `bench.core_step:instant`; when this file runs as a script, make that
# import resolve to this very module (so the probes below share state with the bench).
if __name__ == "__main__":
    sys.modules.setdefault("bench.core_step", sys.modules["__main__"])

import pydantic
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from bot.main import Wiring, build_wiring
from bot.redis_server import EmbeddedRedis
from config.settings import Settings
from core.domain.events import DecisionTrigger, MessageTrigger
from core.domain.ids import new_id, thread_id_for
from core.model.llm import Choice, ModelRequest
from core.redis import keys

IDENTITY = "cli:bench"

TARGET_STEP_MS = 1.0
TARGET_RESUME_MS = 2.0  # at the longest thread
TARGET_BYTES_RATIO = 1.5
TARGET_ROUND_TRIPS = 3
TARGET_RESUME_ROUND_TRIPS = 2
TARGET_GRANT_CHECK_MS = 0.2  # a grant-matched call: the check adds at most one round trip and this long
TARGET_GRANT_CHECK_ROUND_TRIPS = 1

TOOLS_TOML = """
[groups]
bench = ["cli:bench"]
quorum = ["cli:q1", "cli:q2", "cli:q3"]

[tools.instant]
description = "A no-op that returns at once."
idempotent = true
timeout = 10
executor = { kind = "python", target = "bench.core_step:instant" }
[tools.instant.parameters]
type = "object"
required = ["n"]
additionalProperties = false
properties.n = { type = "integer", minimum = 0 }

[tools.gated]
description = "A no-op that needs approval from the bench group."
timeout = 10
executor = { kind = "python", target = "bench.core_step:gated" }
approval = { required = true, approvers = ["group:bench"], allow_self = true, expires_in = 3600 }
[tools.gated.parameters]
type = "object"
required = ["target"]
additionalProperties = false
properties.target = { type = "string" }

[tools.quorum]
description = "A no-op that needs two approvers of the quorum group, the requester never counted."
timeout = 10
executor = { kind = "python", target = "bench.core_step:gated" }
approval = { required = true, approvers = ["group:quorum"], allow_self = false, expires_in = 3600, approvals = 2 }
[tools.quorum.parameters]
type = "object"
required = ["target"]
additionalProperties = false
properties.target = { type = "string" }

[tools.granted]
description = "A no-op that needs approval, or a standing grant, from the bench group."
timeout = 10
executor = { kind = "python", target = "bench.core_step:instant" }
approval = { required = true, approvers = ["group:bench"], allow_self = true, expires_in = 3600, grants = { max_for = "8h" } }
[tools.granted.parameters]
type = "object"
required = ["n"]
additionalProperties = false
properties.n = { type = "integer", minimum = 0 }
"""


# --- counting round trips ----------------------------------------------------------------------


class Counter:
    """Client-side Redis traffic: one `send_packed_command` is one round trip (a pipeline sends
    all its commands at once); every packed command is one command."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands = 0

    def install(self) -> None:
        send = AbstractConnection.send_packed_command
        pack = AbstractConnection.pack_command
        counter = self

        async def send_packed_command(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.round_trips += 1
            await send(conn, command, check_health)

        def pack_command(conn: Any, *args: Any) -> list[bytes]:
            counter.commands += 1
            return pack(conn, *args)

        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign,assignment]
        AbstractConnection.pack_command = pack_command  # type: ignore[method-assign,assignment]

    def snap(self) -> tuple[int, int]:
        return self.round_trips, self.commands


COUNTER = Counter()
GATED_STARTS: list[tuple[float, int]] = []  # (perf_counter, round trips so far) when the gated tool starts


# --- the instant tools (imported by the executor as bench.core_step:instant / :gated) ----------


async def instant(n: int = 0) -> str:
    return "ok"


async def gated(target: str = "") -> str:
    GATED_STARTS.append((time.perf_counter(), COUNTER.round_trips))
    return "done"


# --- the scripted model ------------------------------------------------------------------------


@dataclass
class Mark:
    at: float
    round_trips: int
    commands: int


@dataclass
class BenchModel:
    """Calls `instant` until the turn has `steps` tool calls, then replies (or calls `gated`, or `granted`
    `granted` times before it replies)."""

    steps: int = 0
    final: str = "reply"
    granted: int = 0
    marks: list[Mark] = field(default_factory=list)

    async def choose(self, request: ModelRequest) -> Choice:
        self.marks.append(Mark(time.perf_counter(), COUNTER.round_trips, COUNTER.commands))
        done = request.state.turn_steps
        if done < self.steps:
            return Choice(tool="instant", args={"n": done}, reason="bench step")
        if self.final == "granted" and done < self.steps + self.granted:
            return Choice(tool="granted", args={"n": 0}, reason="bench granted step")
        if self.final in ("gated", "quorum"):
            return Choice(tool=self.final, args={"target": "production"}, reason=f"bench {self.final} step")
        return Choice(tool="reply", args={"message": f"{done} steps done"})


# --- measurements ------------------------------------------------------------------------------


@dataclass
class ThreadRun:
    steps: int
    wall: float  # seconds for agent.handle of the whole thread
    intervals: list[float]  # seconds between consecutive model choices = one step each
    step_round_trips: list[int]
    step_commands: list[int]
    round_trips: int  # for the whole trigger
    reply_round_trips: int  # from the last model choice (the reply) to the end of the trigger
    commands: int
    server_commands: int
    client_user: float  # seconds of this process's user CPU for the whole trigger
    client_sys: float  # and of its system (kernel) CPU: the socket syscalls
    server_cpu: float  # seconds of redis-server CPU (user + sys) for the whole trigger


@dataclass
class Storage:
    events: int
    events_json: int
    log_bytes: int
    meta_bytes: int

    @property
    def stored(self) -> int:
        return self.log_bytes + self.meta_bytes


@dataclass
class Resume:
    latencies: list[float] = field(default_factory=list)  # seconds, decision in -> gated tool starts
    round_trips: list[int] = field(default_factory=list)  # until the tool starts, the decision naming its thread
    bare_round_trips: list[int] = field(default_factory=list)  # the same, by approval id only (`approve <id>`)


@dataclass
class Granted:
    intervals: list[float] = field(default_factory=list)  # seconds, one grant-matched step each
    round_trips: list[int] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)  # the same thread's ungated (instant) steps
    plain_round_trips: list[int] = field(default_factory=list)
    checks: list[tuple[float, int]] = field(default_factory=list)  # `Grants.match` that found one: seconds, trips


@dataclass
class Quorum:
    latencies: list[float] = field(default_factory=list)  # seconds, second approval in -> the tool starts
    round_trips: list[int] = field(default_factory=list)  # until the tool starts, the decision naming its thread
    bare_round_trips: list[int] = field(default_factory=list)  # the same, by approval id only
    first: list[float] = field(default_factory=list)  # seconds of the first approval's handle(): counted, waits
    first_round_trips: list[int] = field(default_factory=list)


@dataclass
class Result:
    steps: int
    runs: list[ThreadRun]
    storage: Storage
    resume: Resume
    granted: Granted
    quorum: Quorum


class Bench:
    def __init__(self, wiring: Wiring, model: BenchModel, channel: str) -> None:
        self.wiring = wiring
        self.model = model
        self.channel = channel
        self.threads: list[str] = []
        self.approvals: list[str] = []
        self.grants: list[str] = []

    @property
    def redis(self) -> aioredis.Redis:
        return self.wiring.redis

    async def server_counters(self) -> tuple[int, float]:
        """Commands the server has run (excluding INFO itself) and its CPU seconds so far."""
        stats: dict[str, Any] = await self.redis.info("commandstats")
        cpu: dict[str, Any] = await self.redis.info("cpu")
        commands = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
        return commands, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def _trigger(self, conversation: str) -> MessageTrigger:
        return MessageTrigger(
            id=new_id(), channel=self.channel, conversation=conversation, sender=IDENTITY, text="run the bench"
        )

    async def thread(self, steps: int, final: str = "reply") -> tuple[str, str, ThreadRun]:
        """Drive one new thread through `steps` instant tool calls; returns (conversation, thread id, run)."""
        conversation = f"bench/{new_id()}"
        thread_id = thread_id_for(self.channel, conversation)
        self.threads.append(thread_id)
        self.model.steps, self.model.final = steps, final
        self.model.marks.clear()
        trigger = self._trigger(conversation)
        server_commands, server_cpu = await self.server_counters()
        rt0, cmd0 = COUNTER.snap()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await self.wiring.threads.handle(trigger)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        rt1, cmd1 = COUNTER.snap()
        server_commands_after, server_cpu_after = await self.server_counters()
        marks = self.model.marks[: steps + 1]  # choice i starts step i; choice `steps` ends the loop
        run = ThreadRun(
            steps=steps,
            wall=wall,
            intervals=[b.at - a.at for a, b in itertools.pairwise(marks)],
            step_round_trips=[b.round_trips - a.round_trips for a, b in itertools.pairwise(marks)],
            step_commands=[b.commands - a.commands for a, b in itertools.pairwise(marks)],
            round_trips=rt1 - rt0,
            reply_round_trips=rt1 - marks[-1].round_trips if marks else 0,
            commands=cmd1 - cmd0,
            server_commands=server_commands_after - server_commands,
            client_user=cpu1.ru_utime - cpu0.ru_utime,
            client_sys=cpu1.ru_stime - cpu0.ru_stime,
            server_cpu=server_cpu_after - server_cpu,
        )
        return conversation, thread_id, run

    async def storage(self, thread_id: str) -> Storage:
        log_key, meta_key = keys.thread_log(thread_id), keys.thread_meta(thread_id)
        entries: Any = await self.redis.xrange(log_key)
        events_json = sum(len(fields[b"e"]) for _, fields in entries)
        log_bytes = await self.redis.memory_usage(log_key, samples=0)
        meta_bytes = await self.redis.memory_usage(meta_key, samples=0)
        return Storage(len(entries), events_json, int(log_bytes or 0), int(meta_bytes or 0))

    async def resume(self, steps: int, repeats: int) -> Resume:
        """A thread of `steps` steps paused on a gated call; approve it `repeats` times (the model
        calls the gated tool again after each approved run, so the thread pauses again)."""
        conversation, thread_id, _ = await self.thread(steps, final="gated")
        out = Resume()
        for n in range(repeats):
            named = n % 2 == 0  # alternately as the API and buttons send it, and as `approve <id>` does
            state = await self.wiring.store.load_state(thread_id)
            assert state.pending_approval is not None, f"thread {thread_id} is not awaiting approval: {state.status}"
            approval_id = state.pending_approval.approval_id
            self.approvals.append(approval_id)
            decision = DecisionTrigger(
                id=new_id(),
                channel=self.channel,
                conversation=conversation,
                sender=IDENTITY,
                approval_id=approval_id,
                decision="approve",
                thread_id=thread_id if named else "",
            )
            GATED_STARTS.clear()
            rt0 = COUNTER.round_trips
            t0 = time.perf_counter()
            await self.wiring.threads.handle(decision)
            assert len(GATED_STARTS) == 1, "the approved tool did not run exactly once"
            started, rt1 = GATED_STARTS[0]
            out.latencies.append(started - t0)
            (out.round_trips if named else out.bare_round_trips).append(rt1 - rt0)
        last = await self.wiring.store.load_state(thread_id)
        if last.pending_approval:
            self.approvals.append(last.pending_approval.approval_id)
        return out

    async def measure(self, steps: int, repeats: int, resumes: int) -> Result:
        runs = []
        for _ in range(repeats * max(1, min(10, 100 // steps))):  # short threads are noisier: more of them
            _, thread_id, run = await self.thread(steps)
            runs.append(run)
        storage = await self.storage(thread_id)
        resume = await self.resume(steps, resumes)
        granted = await self.granted(steps, resumes)
        return Result(steps, runs, storage, resume, granted, await self.quorum(steps, resumes))

    async def quorum(self, steps: int, repeats: int) -> Quorum:
        """A thread of `steps` steps paused on a call needing two approvers; `repeats` times, one approver
        votes (the thread keeps waiting), then a second completes the quorum and the thread resumes. The
        decisions alternate between naming the thread and not, as in `resume`, so the two compare."""
        conversation, thread_id, _ = await self.thread(steps, final="quorum")
        out = Quorum()
        for n in range(repeats):
            named = n % 2 == 0
            state = await self.wiring.store.load_state(thread_id)
            assert state.pending_approval is not None, f"thread {thread_id} is not awaiting approval: {state.status}"
            approval_id = state.pending_approval.approval_id
            self.approvals.append(approval_id)
            first = DecisionTrigger(
                id=new_id(),
                channel=self.channel,
                conversation=conversation,
                sender="cli:q1",
                approval_id=approval_id,
                decision="approve",
                thread_id=thread_id if named else "",
            )
            second = first.model_copy(update={"id": new_id(), "sender": "cli:q2"})
            GATED_STARTS.clear()
            rt0, t0 = COUNTER.round_trips, time.perf_counter()
            await self.wiring.threads.handle(first)
            out.first.append(time.perf_counter() - t0)
            out.first_round_trips.append(COUNTER.round_trips - rt0)
            assert not GATED_STARTS, "one approval of two ran the tool"
            rt0, t0 = COUNTER.round_trips, time.perf_counter()
            await self.wiring.threads.handle(second)
            assert len(GATED_STARTS) == 1, "the quorum's tool did not run exactly once"
            started, rt1 = GATED_STARTS[0]
            out.latencies.append(started - t0)
            (out.round_trips if named else out.bare_round_trips).append(rt1 - rt0)
        last = await self.wiring.store.load_state(thread_id)
        if last.pending_approval:
            self.approvals.append(last.pending_approval.approval_id)
        return out

    async def granted(self, steps: int, count: int) -> Granted:
        """A thread of `steps` steps, then `count` calls of `granted`: the first is approved with a standing
        grant, the others run under it. Times each grant-matched step and each grant check."""
        self.model.granted = count + 1
        conversation, thread_id, run = await self.thread(steps, final="granted")  # waits at the first
        state = await self.wiring.store.load_state(thread_id)
        assert state.pending_approval is not None, f"thread {thread_id} is not awaiting approval: {state.status}"
        self.approvals.append(state.pending_approval.approval_id)
        decision = DecisionTrigger(
            id=new_id(),
            channel=self.channel,
            conversation=conversation,
            sender=IDENTITY,
            approval_id=state.pending_approval.approval_id,
            decision="approve",
            thread_id=thread_id,
            grant_for=3600,
        )
        grants = self.wiring.grants
        match = grants.match
        checks: list[tuple[float, int]] = []

        async def timed(*args: Any) -> Any:
            rt0, t0 = COUNTER.round_trips, time.perf_counter()
            found = await match(*args)
            if found is not None:
                checks.append((time.perf_counter() - t0, COUNTER.round_trips - rt0))
            return found

        grants.match = timed  # type: ignore[method-assign]
        self.model.marks.clear()
        try:
            await self.wiring.threads.handle(decision)
        finally:
            grants.match = match  # type: ignore[method-assign]
        for grant in await grants.listed():  # revoked, so the next thread's first call asks again
            self.grants.append(grant.grant_id)
            if grant.live(self.wiring.threads.clock.now()):
                await grants.revoke(grant.grant_id, IDENTITY, check=False)
        marks = self.model.marks[: count + 1]  # choice i starts grant-matched step i; the last one replies
        assert len(checks) == count, f"{len(checks)} of {count} calls ran under the grant"
        return Granted(
            intervals=[b.at - a.at for a, b in itertools.pairwise(marks)],
            round_trips=[b.round_trips - a.round_trips for a, b in itertools.pairwise(marks)],
            plain=run.intervals,
            plain_round_trips=run.step_round_trips,
            checks=checks,
        )

    async def cleanup(self) -> None:
        """Delete everything the bench wrote (matters on a shared Redis)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for tid in self.threads:
                pipe.delete(keys.thread_log(tid), keys.thread_meta(tid), keys.thread_lock(tid))
            for aid in self.approvals:
                pipe.delete(keys.approval(aid))
            if self.threads:
                pipe.zrem(keys.THREAD_INDEX, *self.threads)
            if self.approvals:
                pipe.zrem(keys.APPROVAL_INDEX, *self.approvals)
            for gid in self.grants:
                pipe.delete(keys.grant(gid))
            if self.grants:
                pipe.zrem(keys.GRANT_INDEX, *self.grants)
            pipe.delete(keys.grants_for("granted", IDENTITY))
            pipe.delete(keys.outbox(self.channel))
            await pipe.execute()


# --- report ------------------------------------------------------------------------------------


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def tenth(values: list[float], last: bool) -> float:
    k = max(1, len(values) // 10)
    return statistics.fmean(values[-k:] if last else values[:k])


def report(results: list[Result], header: list[str]) -> bool:
    lengths = [r.steps for r in results]
    col = 13
    rows: list[str] = []

    def row(label: str, cells: list[str], target: str = "", result: str = "") -> None:
        rows.append(f"{label:<44}" + "".join(f"{c:>{col}}" for c in cells) + f"   {target:<22}{result}")

    row("", [f"{n} steps" for n in lengths], "target", "result")
    rows.append("-" * len(rows[0]))

    # per step
    per_step = [statistics.median(run.wall / run.steps for run in r.runs) for r in results]
    ok_step = all(v <= TARGET_STEP_MS / 1000 for v in per_step)
    row(
        "per step, handle() wall / N (ms, median)",
        [ms(v) for v in per_step],
        f"<= {TARGET_STEP_MS:g} ms each",
        verdict(ok_step),
    )
    intervals = [[i for run in r.runs for i in run.intervals] for r in results]
    row("  marginal step, median (ms)", [ms(statistics.median(v)) for v in intervals])
    row("  marginal step, p90 (ms)", [ms(statistics.quantiles(v, n=10)[-1]) if len(v) > 1 else "-" for v in intervals])
    firsts = [statistics.median(tenth(run.intervals, last=False) for run in r.runs) for r in results]
    lasts = [statistics.median(tenth(run.intervals, last=True) for run in r.runs) for r in results]
    row("  first 10% of steps, mean (ms)", [ms(v) for v in firsts])
    row("  last 10% of steps, mean (ms)", [ms(v) for v in lasts])
    growth = [b / a for a, b in zip(firsts, lasts, strict=True)]
    ok_flat = growth[-1] <= 1.5
    row("  last / first 10%", [f"{g:.2f}x" for g in growth], "flat (<= 1.5x)", verdict(ok_flat))
    fixed = [statistics.median(run.wall - sum(run.intervals) for run in r.runs) for r in results]
    row("  per-trigger fixed cost (ms)", [ms(v) for v in fixed])
    row(
        "  bench process CPU per step, user+sys (ms)",
        [
            f"{ms(statistics.median(run.client_user / run.steps for run in r.runs))}+"
            f"{ms(statistics.median(run.client_sys / run.steps for run in r.runs))}"
            for r in results
        ],
    )
    row(
        "  redis-server CPU per step (ms)",
        [ms(statistics.median(run.server_cpu / run.steps for run in r.runs)) for r in results],
    )

    # resume
    resume = [statistics.median(r.resume.latencies) for r in results]
    ok_resume = resume[-1] <= TARGET_RESUME_MS / 1000
    row(
        "resume: decision -> tool starts (ms, median)",
        [ms(v) for v in resume],
        f"<= {TARGET_RESUME_MS:g} ms at {lengths[-1]}",
        verdict(ok_resume),
    )
    row("  resume, max (ms)", [ms(max(r.resume.latencies)) for r in results])
    ok_resume_rt = all(statistics.median(r.resume.round_trips) <= TARGET_RESUME_ROUND_TRIPS for r in results)
    row(
        "  resume, round trips until tool starts",
        [f"{statistics.median(r.resume.round_trips):g}" for r in results],
        f"<= {TARGET_RESUME_ROUND_TRIPS} (decision names its thread)",
        verdict(ok_resume_rt),
    )
    row(
        "  the same, by approval id only",
        [f"{statistics.median(r.resume.bare_round_trips):g}" if r.resume.bare_round_trips else "-" for r in results],
    )

    # a grant-matched call
    granted = [statistics.median(r.granted.intervals) for r in results]
    plain = [statistics.median(r.granted.plain) for r in results]
    row("grant-matched call: step (ms, median)", [ms(v) for v in granted])
    row(
        "  its range, min-max (ms)", [f"{ms(min(r.granted.intervals))}-{ms(max(r.granted.intervals))}" for r in results]
    )
    row("  an ungated step, same thread (ms, median)", [ms(v) for v in plain])
    row("  added by gate, grant and audit (ms)", [ms(a - b) for a, b in zip(granted, plain, strict=True)])
    row(
        "  round trips: grant-matched / ungated step",
        [
            f"{statistics.median(r.granted.round_trips):g}/{statistics.median(r.granted.plain_round_trips):g}"
            for r in results
        ],
    )
    check = [statistics.median(t for t, _ in r.granted.checks) for r in results]
    ok_check = all(v < TARGET_GRANT_CHECK_MS / 1000 for v in check)
    row(
        "  grant check alone (ms, median)",
        [ms(v) for v in check],
        f"< {TARGET_GRANT_CHECK_MS:g} ms",
        verdict(ok_check),
    )
    row(
        "  grant check, min-max (ms)",
        [f"{ms(min(t for t, _ in r.granted.checks))}-{ms(max(t for t, _ in r.granted.checks))}" for r in results],
    )
    check_rt = [max(n for _, n in r.granted.checks) for r in results]
    ok_check_rt = all(v <= TARGET_GRANT_CHECK_ROUND_TRIPS for v in check_rt)
    row(
        "  grant check round trips (max)",
        [str(v) for v in check_rt],
        f"<= {TARGET_GRANT_CHECK_ROUND_TRIPS}",
        verdict(ok_check_rt),
    )

    # a quorum-2 approval: the second approver's decision, which completes the quorum and resumes
    quorum = [statistics.median(r.quorum.latencies) for r in results]
    row("quorum-2 approval: 2nd -> tool (ms, median)", [ms(v) for v in quorum])
    row("  its range, min-max (ms)", [f"{ms(min(r.quorum.latencies))}-{ms(max(r.quorum.latencies))}" for r in results])
    row("  against single-approval resume", [f"{a / b:.2f}x" for a, b in zip(quorum, resume, strict=True)])
    row(
        "  round trips to tool start: quorum/single",
        [f"{statistics.median(r.quorum.round_trips):g}/{statistics.median(r.resume.round_trips):g}" for r in results],
    )
    row(
        "  the same, by approval id only",
        [
            f"{statistics.median(r.quorum.bare_round_trips):g}/{statistics.median(r.resume.bare_round_trips):g}"
            if r.quorum.bare_round_trips and r.resume.bare_round_trips
            else "-"
            for r in results
        ],
    )
    row(
        "  1st approval, counted (ms, median)",
        [ms(statistics.median(r.quorum.first)) for r in results],
    )
    row("  1st approval round trips", [f"{statistics.median(r.quorum.first_round_trips):g}" for r in results])

    # storage
    st = [r.storage for r in results]
    ratios = [s.stored / s.events_json for s in st]
    per_event = [s.stored / s.events for s in st]
    slopes = [(b.stored - a.stored) / max(1, b.events - a.events) for a, b in itertools.pairwise(st)]
    # Linear (plus a fixed per-thread cost) means the bytes per event do not rise with the length;
    # O(N^2) storage would multiply them by the length ratio.
    linear = per_event[-1] <= 1.1 * min(per_event)
    row("events in the thread", [str(s.events) for s in st])
    row("events' JSON (bytes)", [str(s.events_json) for s in st])
    row("stored: log + meta (bytes)", [f"{s.stored}" for s in st])
    row("  log stream / meta hash (bytes)", [f"{s.log_bytes}/{s.meta_bytes}" for s in st])
    row(
        "stored / events' JSON",
        [f"{r:.2f}x" for r in ratios],
        f"<= {TARGET_BYTES_RATIO:g}x",
        verdict(all(r <= TARGET_BYTES_RATIO for r in ratios)),
    )
    row("stored bytes per event", [f"{v:.0f}" for v in per_event], "linear growth", verdict(linear))
    row("  marginal bytes per added event", ["-"] + [f"{v:.0f}" for v in slopes])

    # round trips
    step_rt = [max(i for run in r.runs for i in run.step_round_trips) for r in results]
    ok_rt = all(v <= TARGET_ROUND_TRIPS for v in step_rt)
    row("round trips per step (max over steps)", [str(v) for v in step_rt], f"<= {TARGET_ROUND_TRIPS}", verdict(ok_rt))
    row(
        "  round trips per step incl. trigger (mean)",
        [f"{statistics.median(run.round_trips / run.steps for run in r.runs):.3f}" for r in results],
    )
    row(
        "reply step round trips (+ lease release)",
        [f"{statistics.median(run.reply_round_trips for run in r.runs):g}" for r in results],
    )
    row(
        "  per-trigger fixed round trips",
        [f"{statistics.median(run.round_trips - sum(run.step_round_trips) for run in r.runs):g}" for r in results],
    )
    row(
        "client commands per step (max over steps)",
        [str(max(i for run in r.runs for i in run.step_commands)) for r in results],
    )
    row(
        "  client commands per step incl. trigger",
        [f"{statistics.median(run.commands / run.steps for run in r.runs):.3f}" for r in results],
    )
    row(
        "server commands per step incl. Lua, trigger",
        [f"{statistics.median(run.server_commands / run.steps for run in r.runs):.3f}" for r in results],
    )

    print("\n".join(header))
    print()
    print("\n".join(rows))
    passed = (
        ok_step
        and ok_flat
        and ok_resume
        and ok_resume_rt
        and ok_check
        and ok_check_rt
        and ok_rt
        and linear
        and all(r <= TARGET_BYTES_RATIO for r in ratios)
    )
    print()
    print(f"overall: {verdict(passed)}")
    return passed


async def environment(client: aioredis.Redis, url: str, embedded: bool) -> list[str]:
    server: dict[str, Any] = await client.info("server")
    try:
        node_bytes = (await client.config_get("stream-node-max-bytes")).get("stream-node-max-bytes", "?")
    except redis.exceptions.ResponseError:  # managed servers may disable CONFIG
        node_bytes = "unknown"
    conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        parser = type(conn._parser).__name__
    finally:
        await client.connection_pool.release(conn)
    hiredis = "yes" if "Hiredis" in parser else "no"
    where = "embedded redis-server in a temp dir" if embedded else url.split("@")[-1]
    versions = (
        f"core step benchmark: Python {platform.python_version()} ({platform.python_implementation()}), "
        f"redis-py {redis.__version__}, hiredis in use: {hiredis} (parser {parser}), pydantic {pydantic.VERSION}"
    )
    machine = (
        f"redis-server {server.get('redis_version')} ({where}, {url.split(':', 1)[0]}, "
        f"stream-node-max-bytes {_s(node_bytes)}), {os.cpu_count()} CPUs, {platform.machine()} {platform.system()} "
        f"{platform.release()}"
    )
    return [versions, machine, "model: scripted, no history, instant; tool: async Python callable returning at once"]


async def run(args: argparse.Namespace, url: str, embedded: bool, data_dir: Path) -> bool:
    tools_file = data_dir / "tools.toml"
    tools_file.write_text(TOOLS_TOML)
    settings = Settings.from_env(
        {
            "BOT_DATA_DIR": str(data_dir / "data"),
            "BOT_TOOLS_FILE": str(tools_file),
            "BOT_STEP_LIMIT": str(10 * max(args.lengths) + 1000),
            "BOT_RATE_MODEL": "off",  # a scripted model costs nothing: no budget to spend (one round trip a call)
            "BOT_LOG_LEVEL": "WARNING",
        }
    )
    COUNTER.install()
    client = aioredis.Redis.from_url(url, health_check_interval=30)  # as bot.main.running_core does
    model = BenchModel()
    wiring = build_wiring(settings, {"PATH": os.environ.get("PATH", "")}, client, language_model=model)
    bench = Bench(wiring, model, channel=f"bench-{new_id()[-8:]}")
    try:
        header = await environment(client, url, embedded)
        load_at_start = os.getloadavg()[0]
        await bench.measure(20, 2, 3)  # warm-up: connections, script loads, imports, pydantic caches
        results = []
        for steps in args.lengths:
            results.append(await bench.measure(steps, args.repeat, args.resumes))
        header.append(
            f"load average (1 min) {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at the end: "
            "other work on this machine inflates every time below"
        )
        passed = report(results, header)
        if args.profile:
            await profile(bench, max(args.lengths), args.profile_top)
        return passed
    finally:
        await bench.cleanup()
        await client.aclose()


PROFILE_GROUPS = [  # (label, substring of the code's file path), first match wins
    ("redis-py", f"{os.sep}redis{os.sep}"),
    ("hiredis", "hiredis"),
    ("pydantic", "pydantic"),
    ("jsonschema", "jsonschema"),
    ("asyncio (loop + socket I/O)", f"{os.sep}asyncio{os.sep}"),
    ("the core (core/)", str(ROOT / "core")),
    ("the bench itself", str(ROOT / "bench")),
]


def profile_groups(profiler: cProfile.Profile) -> list[tuple[str, float]]:
    """Own time (tottime) summed by where the code lives; C functions count under their Python caller's group."""
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}

    def group(filename: str) -> str | None:
        return next((label for label, part in PROFILE_GROUPS if part in filename), None)

    for (filename, _, _), (_, _, own, _, callers) in raw.items():
        label = group(filename)
        if label is None and filename == "~" and callers:  # a builtin: charge it to its main caller
            caller = max(callers.items(), key=lambda item: item[1][2])[0][0]
            label = group(caller)
        label = label or "other (stdlib, builtins)"
        totals[label] = totals.get(label, 0.0) + own
    return sorted(totals.items(), key=lambda item: -item[1])


async def profile(bench: Bench, steps: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await bench.thread(steps)
    profiler.disable()
    groups = profile_groups(profiler)
    total = sum(seconds for _, seconds in groups)
    print(f"\ncProfile of one {steps}-step thread: own time by package (profiler overhead inflates absolute times)")
    for label, seconds in groups:
        print(f"  {label:<28}{seconds * 1000 / steps:8.3f} ms/step {100 * seconds / total:5.1f}%")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(top)
        print(f"\ncProfile of one {steps}-step thread, by {order} (profiler overhead inflates absolute times):")
        print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


def lengths(text: str) -> list[int]:
    values = sorted({int(part) for part in text.split(",") if part.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("lengths must be positive integers, e.g. 10,100,1000")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or None,
        help="a Redis to use (default: REDIS_URL, else an embedded redis-server in a temp dir)",
    )
    parser.add_argument("--lengths", type=lengths, default=[10, 100, 1000], help="thread lengths in steps")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="threads per length for the per-step figures (up to 10x more below 100 steps)",
    )
    parser.add_argument("--resumes", type=int, default=15, help="approvals per length for the resume figure")
    parser.add_argument("--profile", action="store_true", help="cProfile one thread of the longest length")
    parser.add_argument("--profile-top", type=int, default=30, help="rows of the profile to print")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="corebench-"))
    embedded: EmbeddedRedis | None = None
    try:
        url = args.redis_url
        if not url:
            embedded = EmbeddedRedis(tmp / "redis")
            url = embedded.start()
        passed = asyncio.run(run(args, url, embedded is not None, tmp))
    finally:
        if embedded is not None:
            embedded.stop_if_last()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
