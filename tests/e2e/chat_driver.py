"""Drive the real `bot` as subprocesses: type lines into `bot chat`, wait for what it prints.

Every wait has a deadline and fails with the transcript so far; nothing waits a fixed time.
`BotProcesses` owns every process a test starts and the embedded redis-server they share, and
`close()` leaves none of them running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.conftest import APPROVER

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = "/deploy api 1.4.2 production"
DEPLOY_ARGS = {"service": "api", "version": "1.4.2", "environment": "production"}
DEPLOYED = r"^bot> deployed api 1\.4\.2 to production \(was 1\.0\.0\), deployment d-\w+"
DEADLINE_SECONDS = 30.0
# Variables of the developer's shell that would change what the bot does.
_SCRUBBED = ("ANTHROPIC_API_KEY", "REDIS_URL")
_SCRUBBED_PREFIX = "BOT_"


def bot_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with the bot's own settings scrubbed, state under data_dir, and APPROVER
    (`bot chat --user dana`) on call beside cli:operator, so someone other than the requester may approve."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIX)}
    return env | {"BOT_DATA_DIR": str(data_dir), "BOT_GROUP_ONCALL": APPROVER, "PYTHONUNBUFFERED": "1"} | extra


class Chat:
    """One `bot chat` process: `say` types a line, `expect` reads stdout until a pattern matches."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[str] = []  # everything printed on stdout so far
        self.errors: list[str] = []  # and on stderr
        self._stderr = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.errors.append(raw.decode(errors="replace").rstrip("\n"))

    def transcript(self) -> str:
        stderr = "\n".join(self.errors[-20:]) or "(empty)"
        return f"--- {self.name} stdout ---\n" + "\n".join(self.lines) + f"\n--- {self.name} stderr ---\n{stderr}"

    async def say(self, text: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(text.encode() + b"\n")
            await self.process.stdin.drain()
        except ConnectionError:
            await self.process.wait()
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode} before reading {text!r}\n{self.transcript()}"
            ) from None

    async def expect(self, pattern: str) -> re.Match[str]:
        """Read lines until one matches `pattern` (re.search); fail with the transcript at the deadline."""
        compiled = re.compile(pattern)
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(DEADLINE_SECONDS):
                while raw := await self.process.stdout.readline():
                    line = raw.decode(errors="replace").rstrip("\n")
                    self.lines.append(line)
                    if match := compiled.search(line):
                        return match
        except TimeoutError:
            raise AssertionError(
                f"{self.name} printed no line matching {pattern!r} in {DEADLINE_SECONDS:g}s\n{self.transcript()}"
            ) from None
        await self.process.wait()
        raise AssertionError(
            f"{self.name} exited with {self.process.returncode} before printing {pattern!r}\n{self.transcript()}"
        )

    async def quit(self) -> list[str]:
        """Type `quit`, read the rest of stdout and wait for a clean exit; returns the whole transcript."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(AssertionError):  # it may have exited already
            await self.say("quit")
            self.process.stdin.close()
        try:
            async with asyncio.timeout(DEADLINE_SECONDS):
                while raw := await self.process.stdout.readline():
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                await self.process.wait()
                await self._stderr
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not exit within {DEADLINE_SECONDS:g}s of `quit`\n{self.transcript()}"
            ) from None
        assert self.process.returncode == 0, f"{self.name} exited with {self.process.returncode}\n{self.transcript()}"
        return self.lines

    async def kill(self) -> None:
        """SIGKILL: no cleanup runs, as in a crash."""
        with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
            self.process.kill()
        await self.process.wait()
        self._stderr.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr


class BotProcesses:
    """The bot processes of one test, on one data directory, and the redis-server they share.

    `command` is how the bot is started (default: this interpreter's `-m bot`, from the checkout), `cwd`
    where, and `env` what is added to the scrubbed environment (see `bot_env`)."""

    def __init__(
        self,
        data_dir: Path,
        command: Sequence[str] = (sys.executable, "-m", "bot"),
        cwd: Path = REPO_ROOT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.command = list(command)
        self.cwd = cwd
        self.env = dict(env or {})
        self._chats: list[Chat] = []

    @property
    def redis_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    async def chat(self, *args: str, env: Mapping[str, str] | None = None) -> Chat:
        """Start `bot chat ARGS` and wait for its banner."""
        process = await asyncio.create_subprocess_exec(
            *self.command,
            "chat",
            *args,
            cwd=self.cwd,
            env=bot_env(self.data_dir, **self.env, **(env or {})),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        chat = Chat(process, f"bot chat {' '.join(args)}".strip())
        self._chats.append(chat)
        await chat.expect(r"^bot> Type `help` for commands")
        return chat

    async def run(self, *args: str) -> str:
        """Run a one-shot `bot ARGS` to completion; returns stdout, fails on a non-zero exit."""
        process = await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            cwd=self.cwd,
            env=bot_env(self.data_dir, **self.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(DEADLINE_SECONDS):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"`bot {' '.join(args)}` did not finish within {DEADLINE_SECONDS:g}s") from None
        assert process.returncode == 0, f"`bot {' '.join(args)}` exited with {process.returncode}: {err.decode()}"
        return out.decode()

    async def thread_events(self, thread_id: str) -> list[dict[str, Any]]:
        """`bot thread show ID --json`: one event per line."""
        return [json.loads(line) for line in (await self.run("thread", "show", thread_id, "--json")).splitlines()]

    async def deploys(self) -> list[dict[str, Any]]:
        """The deploy entries deployctl recorded in this data directory."""
        path = self.data_dir / "deployments.json"
        if not await asyncio.to_thread(path.exists):
            return []
        state = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
        return [entry for entry in state["history"] if entry["action"] == "deploy"]

    async def redis_pid(self) -> int | None:
        """The pid in BOT_DATA_DIR/redis.pid while it names a live redis-server, else None."""
        try:
            pid = int((await asyncio.to_thread((self.data_dir / "redis.pid").read_text)).strip())
            cmdline = await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_bytes)
        except (OSError, ValueError):
            return None
        return pid if b"redis-server" in cmdline else None

    async def kill_redis(self) -> None:
        """SIGKILL the embedded redis-server and wait until it is gone, as in a crash."""
        pid = await self.redis_pid()
        assert pid is not None, f"no live redis-server named by {self.data_dir / 'redis.pid'}"
        await _kill_and_wait(pid, signal.SIGKILL)

    async def close(self) -> None:
        """Leave nothing running: kill any bot still up, then shut the redis-server down."""
        for chat in self._chats:
            await chat.kill()
        pid = await self.redis_pid()
        if await _shutdown_redis(self.redis_socket) and pid is not None:
            await _wait_gone(pid)
        elif pid is not None:
            await _kill_and_wait(pid, signal.SIGKILL)


async def _shutdown_redis(socket: Path) -> bool:
    """SHUTDOWN (which writes the append-only file) if a server answers on the socket; True if one did."""
    # No retries: the server dropping the connection is the expected answer to SHUTDOWN.
    client = aioredis.Redis(unix_socket_path=str(socket), socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        await client.ping()
        await client.shutdown()
    except (aioredis.RedisError, OSError):
        return False
    finally:
        await client.aclose()
    return True


async def _kill_and_wait(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    await _wait_gone(pid)


async def _wait_gone(pid: int) -> None:
    """Wait for a process that is not our child to exit: its pidfd becomes readable when it does."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            await gone
    except TimeoutError:
        raise AssertionError(f"process {pid} was still running {DEADLINE_SECONDS:g}s after it was stopped") from None
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def request_deploy(chat: Chat, text: str = DEPLOY) -> str:
    """Ask for the production deploy and return the approval id the bot prints."""
    await chat.say(text)
    match = await chat.expect(r"^bot> approval needed \[(\w+)\]: deploy (\{.*\})$")
    approval_id, args = match.groups()
    assert args == '{"environment": "production", "service": "api", "version": "1.4.2"}'
    await chat.expect(rf"^bot>   answer: approve {approval_id}  \|  reject {approval_id} <reason>$")
    return approval_id


async def on_call(bots: BotProcesses, env: dict[str, str] | None = None) -> Chat:
    """A second terminal, as APPROVER."""
    return await bots.chat("--user", APPROVER.removeprefix("cli:"), env=env)


async def approve(requester: Chat, approval_id: str, by: Chat) -> None:
    """`by` approves at her terminal; the receipt and the deploy's result print at the requester's, where the
    thread is. (The approver's terminal prints no receipt: see `test_the_approver_sees_the_receipt`.)"""
    await by.say(f"approve {approval_id}")
    await requester.expect(rf"^bot> approval {approval_id} approved by {APPROVER.removeprefix('cli:')} at ")
    await requester.expect(DEPLOYED)
