"""The connections to the MCP servers of `[mcp.servers]`: one per server and process, through the official SDK.

Each connection is owned by one task that enters the SDK's `Client` (its `ClientSession`, transport and
version negotiation: `server/discover` for a 2026-07-28 server, else the `initialize` handshake) and
leaves it, as anyio requires. It lists the server's tools into the catalog, and lists them again when
the server says they changed: a `subscriptions/listen` stream on a 2026-07-28 connection,
`notifications/tools/list_changed` on an older one.

A server that dies is noticed (its stream ends); a call in flight then fails with a clear tool error
("may or may not have run": the loop's interrupted-tool rule decides about a re-run), and the next call
connects again.

The bot advertises one client capability, elicitation (form and URL mode): a server's question during a
call goes to the thread's person through the call's `Asker` (`core.runtime.asking`), whether it comes as a
2026-07-28 `InputRequiredResult` (the SDK drives the rounds, inside the call's task) or as a 2025-era
`elicitation/create` request (read by the connection's task: it is the call's when only one call is in
flight on that connection). The call's timeout stops while a question waits; the question has its own
(`ask_timeout`). No sampling and no roots.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, MCPError, StdioServerParameters, types
from mcp.client import Transport
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from pydantic import ValidationError

from core.domain.errors import ToolFailed
from core.tools.mcp import forms
from core.tools.mcp.catalog import ListedTool, McpCatalog, McpSection, ServerConfig
from core.tools.registry import PLACEHOLDER, McpExecutor

log = logging.getLogger(__name__)
CLIENT_INFO = types.Implementation(name="opsbot", version="0.1.0")
HTTP_TIMEOUT = httpx2.Timeout(30, read=300)  # the SDK's own defaults: a server may hold a stream open
CONNECTION_ERRORS = (OSError, httpx2.HTTPError, EOFError)


@dataclass(eq=False)
class Call:
    """One call in flight: whom to ask its server's questions, and its clock (stopped while a question waits)."""

    tool: str
    asker: forms.Asker | None
    timer: asyncio.Timeout | None = None
    unanswered: str = ""  # a question that timed out: the call fails saying so
    asking: asyncio.Lock = field(default_factory=asyncio.Lock)  # one question at a time in a thread
    waiting: int = 0  # questions open now; the clock stops at the first and goes on after the last
    left: float = 0.0  # the call's time left when its clock stopped


CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("mcp_call", default=None)


class Unreachable(Exception):
    """A server could not be connected to; the message says why in words an operator can act on."""


def fill(template: str, env: Mapping[str, str], what: str) -> str:
    """`Bearer {env:TOKEN}` with the variable's value; a missing variable is named."""

    def sub(match: Any) -> str:
        name = match.group(1).removeprefix("env:")
        if name not in env:
            raise Unreachable(f"{what} needs environment variable {name}; set it")
        return env[name]

    return PLACEHOLDER.sub(sub, template)


def failure(exc: BaseException, config: ServerConfig) -> str:
    """Why a connection failed: not reachable, not an MCP server, or timed out."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # anyio task groups wrap the cause
        exc = exc.exceptions[0]
    where = f"{config.command} {' '.join(config.args)}".strip() if config.command else config.url
    if isinstance(exc, Unreachable):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out after {config.connect_timeout:g}s starting or reaching {where} (connect_timeout)"
    if isinstance(exc, FileNotFoundError | PermissionError):
        return f"not reachable: cannot start {config.command!r} ({exc.strerror}); fix its command"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"not an MCP server: {where} answered HTTP {exc.response.status_code}"
    if isinstance(exc, CONNECTION_ERRORS):
        return f"not reachable: {where} ({type(exc).__name__}: {exc})"
    if isinstance(exc, MCPError | ValidationError | json.JSONDecodeError | RuntimeError):
        return f"not an MCP server: {where} did not answer the MCP handshake ({type(exc).__name__}: {exc})"[:400]
    return f"failed: {type(exc).__name__}: {exc}"[:400]


def listed(tool: types.Tool) -> ListedTool:
    notes = tool.annotations
    hints = {}
    if notes is not None:
        hints = {
            "read_only": notes.read_only_hint,
            "destructive": notes.destructive_hint,
            "idempotent": notes.idempotent_hint,
            "open_world": notes.open_world_hint,
        }
    title = tool.title or (notes.title if notes and notes.title else "") or ""
    return ListedTool(tool.name, tool.description or "", dict(tool.input_schema), title, hints)


def result_text(result: types.CallToolResult) -> str:
    """The text the model reads: text blocks as they are, the other kinds named, or the structured result."""
    parts: list[str] = []
    for block in result.content:
        match block:
            case types.TextContent():
                parts.append(block.text)
            case types.ImageContent() | types.AudioContent():
                parts.append(f"[{block.type}: {block.mime_type}]")
            case types.EmbeddedResource():
                inner = block.resource
                parts.append(inner.text if isinstance(inner, types.TextResourceContents) else f"[resource {inner.uri}]")
            case types.ResourceLink():
                parts.append(f"[link {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, sort_keys=True))
    return "\n".join(parts).strip()


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit] or "no detail"


class Connection:
    """One server's connection: opened on first need, owned by one task, reopened after it dies."""

    def __init__(
        self, name: str, config: ServerConfig, env: Mapping[str, str], catalog: McpCatalog, logs: Path | None = None
    ) -> None:
        self.name = name
        self.logs = logs  # where a stdio server's stderr goes (`<server>.log`); None: the bot's own stderr
        self.config = config
        self._env = env
        self._catalog = catalog
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[list[str]]] = set()
        self.calls: set[Call] = set()  # in flight: a 2025-era server's question is the only one's
        self.dead = False  # the server's stream ended: the next call connects again
        self.last_error = ""

    def transport(self) -> Transport:
        if self.config.command is not None:
            env = {key: fill(value, self._env, f"MCP server {self.name}") for key, value in self.config.env.items()}
            params = StdioServerParameters(
                command=self.config.command, args=self.config.args, env=env or None, cwd=self.config.cwd
            )
            return self._stdio(params)
        assert self.config.url is not None
        headers = {k: fill(v, self._env, f"MCP server {self.name}") for k, v in self.config.headers.items()}
        return self._http(self.config.url, headers)

    @contextlib.asynccontextmanager
    async def _stdio(self, params: StdioServerParameters) -> AsyncIterator[Any]:
        if self.logs is None:
            async with stdio_client(params) as streams:
                yield streams
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{self.name}.log").open("a", encoding="utf-8") as errlog:
            async with stdio_client(params, errlog=errlog) as streams:
                yield streams

    @contextlib.asynccontextmanager
    async def _http(self, url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT) as http,
            streamable_http_client(url, http_client=http) as streams,
        ):
            yield streams

    async def client(self) -> Client:
        """The live client, connecting (again) first if there is none or the last one died."""
        async with self._lock:
            if self._client is not None and not self.dead:
                return self._client
            await self._close()
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._stop, self.dead = asyncio.Event(), False
            # A context of its own: the connection outlives the call that opened it (CURRENT must not leak).
            self._owner = asyncio.create_task(self._own(ready), name=f"mcp:{self.name}", context=contextvars.Context())
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    self._client = await asyncio.shield(ready)
            except BaseException as exc:
                await self._close()
                if ready.done() and not ready.cancelled():
                    ready.exception()  # retrieved: the owner failed after this wait gave up
                self.last_error = failure(exc, self.config)
                raise Unreachable(self.last_error) from exc
            self.last_error = ""
            return self._client

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        """Enter the SDK client, list the tools, follow changes, and leave it in this same task."""
        try:
            client = Client(
                self.transport(),
                cache=None,
                client_info=CLIENT_INFO,
                message_handler=self._on_message,
                elicitation_callback=self._on_elicit,
                mode=self.config.protocol,
            )
            async with client:
                await self.relist(client)
                ready.set_result(client)
                await self._follow(client)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %s: the connection ended: %s", self.name, failure(exc, self.config))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            self.dead = True

    async def _follow(self, client: Client) -> None:
        """Until told to stop or the server goes away: re-list on every `tools/list_changed`."""
        caps = client.server_capabilities.tools
        if caps is None or not caps.list_changed:
            await self._stop.wait()
            return
        try:
            async with client.listen(tools_list_changed=True) as events:
                async for _ in events:
                    await self.relist(client)
        except ListenNotSupportedError:  # a 2025-era server: its notifications reach _on_message
            await self._stop.wait()
        except (SubscriptionLost, MCPError):  # the server went away (or refused to stream): the connection is done
            pass
        # The listen stream ended: the server closed it or died. Either way this connection is over.

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification) and self._client is not None:
            task = asyncio.create_task(self.relist(self._client))  # not inline: the SDK's reader is waiting
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        """The server asks a person something during a call: the call's asker puts it to the thread."""
        call = CURRENT.get() or (next(iter(self.calls)) if len(self.calls) == 1 else None)
        if call is None or call.asker is None:
            why = "several calls are in flight" if len(self.calls) > 1 else "no call of a thread is in flight"
            return types.ErrorData(code=types.INVALID_REQUEST, message=f"opsbot cannot tell whom to ask: {why}")
        if isinstance(params, types.ElicitRequestURLParams):
            ask = forms.Ask(self.name, call.tool, params.message, url=params.url)
        else:
            ask = forms.Ask(self.name, call.tool, params.message, schema=dict(params.requested_schema))
        loop = asyncio.get_running_loop()
        if call.timer is not None and call.waiting == 0 and (when := call.timer.when()) is not None:
            call.left = max(when - loop.time(), 0.0)
            call.timer.reschedule(None)  # a person's time is not the tool's
        call.waiting += 1
        try:
            async with call.asking:
                answer = await call.asker.ask(ask, self.config.ask_timeout)
        finally:
            call.waiting -= 1
            if call.timer is not None and call.waiting == 0:
                call.timer.reschedule(loop.time() + call.left)
        if answer.timed_out:
            call.unanswered = f"nobody answered its question within {self.config.ask_timeout:g}s (ask_timeout)"
        content = answer.content if answer.action == "accept" and ask.mode == "form" else None
        return types.ElicitResult(action=answer.action, content=content)

    async def relist(self, client: Client) -> list[str]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the bot
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            if (cursor := page.next_cursor) is None:
                break
        names = self._catalog.replace(self.name, [listed(tool) for tool in tools])
        log.info("MCP server %s: %d tools: %s", self.name, len(names), ", ".join(names))
        return names

    async def _close(self) -> None:
        self._client = None
        owner, self._owner = self._owner, None
        if owner is not None and not owner.done():
            self._stop.set()
            owner.cancel()
        if owner is not None:
            with contextlib.suppress(BaseException):
                await owner

    async def aclose(self) -> None:
        async with self._lock:
            await self._close()
        for task in list(self._tasks):
            task.cancel()


class McpClients:
    """Every declared server's connection, for this process; calls, start and stop."""

    def __init__(self, catalog: McpCatalog, env: Mapping[str, str], logs: Path | None = None) -> None:
        self.catalog = catalog
        self.connections = {name: Connection(name, cfg, env, catalog, logs) for name, cfg in catalog.servers.items()}

    async def start(self) -> dict[str, str]:
        """Connect to every server and list its tools; a server that fails is logged, not fatal: its tools
        give a clear error until it answers, and each call tries again. Returns {server: why} for failures."""
        failed: dict[str, str] = {}

        async def connect(connection: Connection) -> None:
            try:
                await connection.client()
            except Unreachable as exc:
                failed[connection.name] = str(exc)
                log.warning("MCP server %s: %s; its tools fail until it answers", connection.name, exc)

        await asyncio.gather(*(connect(c) for c in self.connections.values()))
        return failed

    async def call(
        self,
        tool: str,
        executor: McpExecutor,
        args: Mapping[str, Any],
        limit: float | None = None,
        asker: forms.Asker | None = None,
    ) -> str:
        """Call the tool within `limit` seconds (not counting the time its server's questions wait for a person);
        every failure is a one-line ToolFailed the model and the thread can read."""
        connection = self.connections[executor.server]
        call = Call(tool, asker)
        try:
            async with asyncio.timeout(limit) as call.timer:
                client = await connection.client()
                result = await self._called(connection, client, call, executor, args)
        except TimeoutError:
            raise ToolFailed(f"{tool} timed out after {limit:g}s") from None
        except Unreachable as exc:
            raise ToolFailed(f"{tool}: MCP server {executor.server} is unavailable: {exc}") from None
        text = result_text(result)
        if call.unanswered:
            said = f"; the server answered: {one_line(text)}" if text else ""
            raise ToolFailed(
                f"{tool}: MCP server {executor.server} asked a question and {call.unanswered}, so it was cancelled{said}"
            )
        if result.is_error:
            raise ToolFailed(f"{tool} failed: {one_line(text)}")
        return text or "(no output)"

    async def _called(
        self, connection: Connection, client: Client, call: Call, executor: McpExecutor, args: Mapping[str, Any]
    ) -> types.CallToolResult:
        tool = call.tool
        token = CURRENT.set(call)
        connection.calls.add(call)
        try:
            return await client.call_tool(executor.tool, dict(args))
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED or connection.dead:
                connection.dead = True
                raise ToolFailed(
                    f"{tool}: MCP server {executor.server} stopped during the call; it may or may not have run "
                    "(the next call reconnects)"
                ) from None
            raise ToolFailed(
                f"{tool}: MCP server {executor.server} refused the call: {one_line(exc.error.message)}"
            ) from None
        except CONNECTION_ERRORS as exc:
            connection.dead = True
            raise ToolFailed(
                f"{tool}: lost MCP server {executor.server} during the call ({type(exc).__name__}); it may or "
                "may not have run (the next call reconnects)"
            ) from None
        except ValidationError as exc:
            raise ToolFailed(f"{tool}: MCP server {executor.server} answered with an invalid result: {exc}") from None
        finally:
            connection.calls.discard(call)
            CURRENT.reset(token)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connections.values()))


async def probe(name: str, config: ServerConfig, env: Mapping[str, str]) -> list[str]:
    """Connect once to one server and list its tools, changing nothing (`bot check-config`); the names as
    the bot would call them. Raises Unreachable saying why not."""
    catalog = McpCatalog(McpSection(servers={name: config}, approvers=["nobody"]), "probe")
    connection = Connection(name, config, env, catalog)
    try:
        await connection.client()
        return catalog.listed(name)
    finally:
        await connection.aclose()
