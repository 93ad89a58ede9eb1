"""Run a validated tool call: an argv command (never a shell), an HTTP request, a Python callable, or a
tool of an MCP server (`core.tools.mcp.client`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from core.domain.errors import ConfigError, ToolFailed
from core.tools.redact import Redactor
from core.tools.registry import PLACEHOLDER, CommandExecutor, HttpExecutor, McpExecutor, PythonExecutor, ToolSpec

if TYPE_CHECKING:  # the MCP SDK is imported only where MCP servers are declared
    from core.tools.mcp.client import McpClients
    from core.tools.mcp.forms import Asker


@dataclass(frozen=True)
class CallContext:
    thread_id: str
    call_id: str
    requester: str
    asker: Asker | None = None  # asks the thread's person what an MCP server asks during the call


@dataclass(frozen=True)
class ToolOutput:
    text: str
    duration_ms: float


def _fill(template: str, values: Mapping[str, Any], quote_values: bool = False) -> str:
    def sub(match: Any) -> str:
        value = values[match.group(1)]
        text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        return quote(text, safe="") if quote_values else text

    return PLACEHOLDER.sub(sub, template)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated: {len(text) - limit} more characters]"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


class ToolRunner:
    """Executes tools for the agent; every failure becomes a one-line ToolFailed the model can read."""

    def __init__(
        self,
        *,
        workdir: Path,
        data_dir: Path,
        env: Mapping[str, str],
        redactor: Redactor,
        http: aiohttp.ClientSession | None = None,
        mcp: McpClients | None = None,
    ) -> None:
        self._workdir = workdir
        self._data_dir = data_dir
        self._env = dict(env)
        self._redactor = redactor
        self._http = http
        self._mcp = mcp
        # The variables an MCP server's env and headers name are secrets whatever they are called.
        names = mcp.catalog.secret_names() if mcp is not None else set()
        self._mcp_secrets = Redactor({name: self._env[name] for name in names if name in self._env})

    async def run(self, spec: ToolSpec, args: Mapping[str, Any], ctx: CallContext) -> ToolOutput:
        values = {
            **args,
            "python": sys.executable,
            "requester": ctx.requester,
            "thread_id": ctx.thread_id,
            "call_id": ctx.call_id,
            "data_dir": str(self._data_dir),
        }
        started = time.perf_counter()
        # An MCP call keeps its own clock: the time a person takes to answer its server's question is not the tool's.
        timeout = None if isinstance(spec.executor, McpExecutor) else spec.timeout
        try:
            async with asyncio.timeout(timeout):
                text = await self._dispatch(spec, args, values, ctx)
        except TimeoutError:
            raise ToolFailed(f"{spec.name} timed out after {spec.timeout:g}s") from None
        text = self._mcp_secrets.text(self._redactor.text(text))
        return ToolOutput(_cap(text, spec.max_output), (time.perf_counter() - started) * 1000)

    async def _dispatch(
        self, spec: ToolSpec, args: Mapping[str, Any], values: Mapping[str, Any], ctx: CallContext
    ) -> str:
        match spec.executor:
            case CommandExecutor() as executor:
                return await self._command(spec.name, executor, values)
            case HttpExecutor() as executor:
                return await self._request(spec.name, executor, args, values)
            case PythonExecutor() as executor:
                return await self._call(spec.name, executor, args)
            case McpExecutor() as executor:
                if self._mcp is None:
                    raise ConfigError(f"tool {spec.name!r} is an MCP server's but the runner has no MCP clients")
                try:
                    return await self._mcp.call(spec.name, executor, args, spec.timeout, ctx.asker)
                except ToolFailed as exc:  # a server's error text can quote what it was given
                    raise ToolFailed(self._mcp_secrets.text(self._redactor.text(str(exc)))) from None
        raise ConfigError(f"tool {spec.name!r} has no executor")

    async def _command(self, name: str, executor: CommandExecutor, values: Mapping[str, Any]) -> str:
        argv = [_fill(part, values) for part in executor.argv]
        env: dict[str, str] = {key: self._env[key] for key in ("PATH", "HOME", "LANG") if key in self._env}
        env |= {key: self._env[key] for key in executor.env if key in self._env}
        env["BOT_DATA_DIR"] = str(self._data_dir)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self._workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a signal to the worker's process group (Ctrl-C, Procfile runners) spares it
            )
        except OSError as exc:
            raise ToolFailed(f"{name}: cannot start {argv[0]!r}: {exc.strerror}") from exc
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise ToolFailed(f"{name} exited with status {proc.returncode}: {self._redactor.text(_last_line(text))}")
        return text.strip() or "(no output)"

    async def _request(
        self, name: str, executor: HttpExecutor, args: Mapping[str, Any], values: Mapping[str, Any]
    ) -> str:
        if self._http is None:
            raise ConfigError(f"tool {name!r} makes HTTP requests but the runner has no HTTP session")
        url = _fill(executor.url, values, quote_values=True)
        headers = {key: self._header(name, value) for key, value in executor.headers.items()}
        body = None if executor.method == "GET" else dict(args)
        params = {k: str(v) for k, v in args.items()} if executor.method == "GET" else None
        try:
            async with self._http.request(executor.method, url, json=body, params=params, headers=headers) as resp:
                text = await resp.text()
        except aiohttp.ClientError as exc:
            raise ToolFailed(f"{name}: {executor.method} {url} failed: {exc}") from exc
        if resp.status >= 400:
            raise ToolFailed(f"{name}: {executor.method} {url} answered {resp.status}: {_last_line(text)}")
        return f"HTTP {resp.status}\n{text.strip()}"

    def _header(self, tool: str, template: str) -> str:
        def sub(match: Any) -> str:
            key = match.group(1)
            if not key.startswith("env:"):
                raise ConfigError(f"tool {tool!r}: header placeholders must be {{env:NAME}}, got {{{key}}}")
            try:
                return self._env[key.removeprefix("env:")]
            except KeyError:
                raise ConfigError(f"tool {tool!r} needs environment variable {key[4:]}; set it") from None

        return PLACEHOLDER.sub(sub, template)

    async def _call(self, name: str, executor: PythonExecutor, args: Mapping[str, Any]) -> str:
        module_name, _, attr = executor.target.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"tool {name!r}: cannot import {executor.target}: {exc}") from exc
        try:
            result = await func(**args) if inspect.iscoroutinefunction(func) else await asyncio.to_thread(func, **args)
        except ToolFailed:
            raise
        except Exception as exc:
            raise ToolFailed(f"{name} failed: {type(exc).__name__}: {exc}") from exc
        return str(result)
