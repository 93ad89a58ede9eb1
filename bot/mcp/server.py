"""The MCP server's tools, on the official SDK's `MCPServer`, for whichever transport serves them.

Each tool names its caller with `identity(ctx)`: the configured identity on stdio, the bearer token's
on HTTP (`bot.mcp.http`). Refusals are tool errors (`isError`) that say what to do; a decision is
structured content (`core.runtime.external.Decision`), also given as JSON text for older clients.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from bot.mcp.requests import Requests
from bot.mcp.settings import McpSettings
from core.domain.errors import BotError
from core.runtime.external import Decision

Identity = Callable[[Context], str]

INSTRUCTIONS = """\
Human approval and answers from the ops team, on their chat channels. Before an action that needs a
person's sign-off (a deploy, a scale-down, a data fix), call request_approval with the exact action
and arguments you will run, and why. It answers with the decision, or, if nobody decided within the
wait, a handle: call wait_for_decision(handle) until the status is final. Run the action only when the
status is approved, once, with exactly the approved arguments; rejected, expired and failed mean do not
run it. ask_human asks the team a question (optionally with choices) and answers the same way."""

PENDING = (
    "{said}. Not decided yet: call wait_for_decision with handle {handle!r} to keep waiting (as often as "
    "needed; the request stays open until it is decided or expires). Do not run the action before it is approved."
)


def build_server(requests: Requests, settings: McpSettings, identity: Identity) -> MCPServer:
    server: MCPServer = MCPServer("opsbot", instructions=INSTRUCTIONS, version=_version())

    async def answer(ctx: Context, caller: str, handle: str, arguments: dict[str, Any] | None = None) -> Decision:
        async def progress(waited: float, said: str) -> None:
            await ctx.report_progress(round(waited, 1), None, said)  # sent only when the call carries a token

        decision = await requests.wait(
            caller,
            handle,
            seconds=settings.wait_seconds,
            every=settings.progress_seconds,
            progress=progress,
            arguments=arguments,
        )
        if not decision.final:
            decision = decision.model_copy(update={"message": PENDING.format(said=decision.message, handle=handle)})
        return decision

    @server.tool(
        title="Ask the ops team to approve an action",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    )
    async def request_approval(
        action: Annotated[str, Field(description="the action you will run, e.g. deploy or k8s.scale_deployment")],
        arguments: Annotated[dict[str, Any], Field(description="its exact arguments: the approval is for these only")],
        reason: Annotated[str, Field(description="why, in a sentence the approvers read on the card")],
        ctx: Context,
    ) -> Decision:
        """Ask a human to approve `action` with `arguments`; wait for the decision (or get a handle to wait on)."""
        caller = identity(ctx)
        try:
            handle = await requests.request_approval(caller, action, arguments, reason)
            return await answer(ctx, caller, handle)
        except BotError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        name="ask_human",
        title="Ask the ops team a question",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False),
    )
    async def ask_human(
        question: Annotated[str, Field(description="the question, in a sentence people can answer")],
        ctx: Context,
        options: Annotated[
            list[str] | None, Field(description="choices shown as buttons; a free answer is accepted too")
        ] = None,
    ) -> Decision:
        """Ask the team a question on its chat channel; wait for the answer (or get a handle to wait on)."""
        caller = identity(ctx)
        try:
            handle = await requests.ask_human(caller, question, list(options or []))
            return await answer(ctx, caller, handle)
        except BotError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        title="Wait for a decision",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True),
    )
    async def wait_for_decision(
        handle: Annotated[str, Field(description="the handle request_approval or ask_human gave")],
        ctx: Context,
        arguments: Annotated[
            dict[str, Any] | None,
            Field(
                description="the arguments you are about to run the action with: refused unless they are the approved ones"
            ),
        ] = None,
    ) -> Decision:
        """Wait for the decision on a request made earlier, from any process; returns it as soon as it is made."""
        caller = identity(ctx)
        try:
            return await answer(ctx, caller, handle, arguments)
        except BotError as exc:
            raise ToolError(str(exc)) from None

    return server


def _version() -> str:
    try:
        return metadata.version("opsbot")
    except metadata.PackageNotFoundError:  # pragma: no cover - a checkout never installed
        return "0"
