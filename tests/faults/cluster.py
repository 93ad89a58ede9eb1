"""Real processes for the fault suite: `bot worker`s that a test owns and stops (its redis-server is
bot/redis_server.py's `RedisServer`, started and stopped through `asyncio.to_thread`).

Every process starts in its own session, so killing its process group also kills the tool it
may be running. Every wait has a deadline; nothing waits a fixed time for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.eventually import DEADLINE_SECONDS, eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_SECONDS = 10.0
# Takeovers in seconds rather than a minute: an unacknowledged entry is claimed, a dead lease lapses.
FAST_TAKEOVER = {"BOT_CLAIM_IDLE_MS": "1500", "BOT_LOCK_TTL_MS": "1500"}


async def _reap(process: asyncio.subprocess.Process, sig: int, group: bool) -> int:
    """Signal the process (or its whole group) and wait for it; SIGKILL the group after STOP_SECONDS."""
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    try:
        async with asyncio.timeout(STOP_SECONDS):
            return await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return await process.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_stray_tool(pid: int) -> None:
    """SIGKILL a tool process of this suite if it is still running (checked by its command line)."""
    with contextlib.suppress(OSError):
        if b"faults/effect.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)


class Worker:
    """One `python -m bot worker` process; its stderr (JSON log lines) goes to a file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path, name: str) -> None:
        self.process = process
        self.log = log
        self.name = name

    @property
    def pid(self) -> int:
        return self.process.pid

    async def log_lines(self) -> list[dict[str, Any]]:
        text = await asyncio.to_thread(self.log.read_text, errors="replace")
        lines = []
        for raw in text.splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
        return lines

    async def logged(self, fragment: str) -> bool:
        return any(fragment in line.get("msg", "") for line in await self.log_lines())

    async def crash(self) -> None:
        """SIGKILL the worker and the tool it runs: nothing gets to clean up."""
        await _reap(self.process, signal.SIGKILL, group=True)

    def signal(self, sig: int, group: bool = False) -> None:
        """Send `sig` to the worker, or to its whole process group (the tool it runs included)."""
        if group:
            os.killpg(self.pid, sig)
        else:
            self.process.send_signal(sig)

    async def exited(self, within: float = DEADLINE_SECONDS) -> int:
        """Wait for the worker to exit on its own; returns its exit status."""
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name} still running after {within:g}s\n{await self.tail()}") from None

    async def tail(self, lines: int = 15) -> str:
        text = await asyncio.to_thread(self.log.read_text, errors="replace")
        return f"--- {self.name} (pid {self.pid}) ---\n" + "\n".join(text.splitlines()[-lines:])


class Workers:
    """The `bot worker` (or `command`) processes of one test; `close()` leaves none running."""

    def __init__(self, root: Path, env: dict[str, str], command: str = "worker") -> None:
        self.root = root
        self.env = env
        self.command = command
        self.all: list[Worker] = []

    async def start(self, count: int, **env: str) -> list[Worker]:
        """`count` more workers; `env` adds to theirs (`BOT_FAILPOINTS="after-commit=kill"`)."""
        started = [await self._spawn(len(self.all) + i, env) for i in range(count)]
        self.all += started
        for worker in started:
            await eventually(
                functools.partial(self._ready, worker), f"{worker.name} logging that it started", within=30
            )
        return started

    async def _spawn(self, index: int, env: dict[str, str]) -> Worker:
        log = self.root / f"{self.command}-{index}.log"
        err = await asyncio.to_thread(open, log, "wb")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                self.command,
                cwd=REPO_ROOT,
                env=self.env | env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        finally:
            err.close()  # the child has its own copy of the descriptor
        return Worker(process, log, f"{self.command}-{index}")

    async def _ready(self, worker: Worker) -> bool:
        if await worker.logged("started"):
            return True  # and may have died since, at a failpoint: the test decides what that means
        if worker.process.returncode is not None:
            raise AssertionError(f"{worker.name} exited with {worker.process.returncode}\n{await worker.tail()}")
        return False

    def by_pid(self, pid: int) -> Worker:
        return next(worker for worker in self.all if worker.pid == pid)

    async def tails(self) -> str:
        return "\n".join([await worker.tail() for worker in self.all])

    async def close(self) -> None:
        for worker in self.all:
            if worker.process.returncode is None:
                await worker.crash()


def worker_env(redis_url: str, data_dir: Path, tools_file: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without the bot's own settings, plus what a fault test needs."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("BOT_") and k not in ("REDIS_URL", "ANTHROPIC_API_KEY")
    }
    return env | {
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(data_dir),
        "BOT_TOOLS_FILE": str(tools_file),
        "BOT_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **FAST_TAKEOVER,
        **extra,
    }
