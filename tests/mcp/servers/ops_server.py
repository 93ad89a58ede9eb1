"""A small ops MCP server for the client tests and the bench, written with the official SDK (`MCPServer`).

    python -m tests.mcp.servers.ops_server stdio
    python -m tests.mcp.servers.ops_server http     # prints the port it listens on, then serves /mcp

Its tools stand in for a Kubernetes server's: a read (`get_pods`), a destructive write
(`scale_deployment`), and the misbehaving kinds a client must survive: one that fails (`isError`),
one that never answers in time (`stall`), one whose process dies mid-call (`crash`), and one that
adds a tool and announces the change (`add_tool`, for `tools/list_changed`).

Three ask the person during the call (elicitation): `rollout` (a form: which version, canary or not),
`rotate_key` (a form that asks for a secret, which a client must refuse) and `login` (URL mode, by the
2026-07-28 revision's `InputRequiredResult`).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Annotated

import anyio
import uvicorn
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import ElicitRequest, ElicitRequestURLParams, ElicitResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field

server = MCPServer("ops-test", version="1.0", log_level="WARNING")
scaled: dict[str, int] = {}


@server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
def get_pods(namespace: str) -> str:
    """List the pods of a namespace."""
    return f"pods in {namespace}: api-1 Running, api-2 Running"


@server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
def scale_deployment(name: str, replicas: int) -> str:
    """Scale a deployment to a number of replicas."""
    scaled[name] = replicas
    return f"deployment {name} scaled to {replicas} replicas (token {os.environ.get('OPS_TOKEN', 'none')})"


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"cannot do that: {reason}")


@server.tool()
async def stall() -> str:
    """Never answers in time."""
    await anyio.sleep(3600)
    return "late"


@server.tool()
def crash() -> str:
    """The server process dies while the call is in flight."""
    os._exit(3)


@server.tool()
async def add_tool(ctx: Context) -> str:
    """Add a `drain_node` tool and tell listening clients the tool list changed."""

    def drain_node(node: str) -> str:
        """Drain a node."""
        return f"node {node} drained"

    server.add_tool(drain_node)
    await ctx.notify_tools_changed()
    if ctx.request_context.session.protocol_version not in (None, "2026-07-28"):
        await ctx.request_context.session.send_tool_list_changed()  # a 2025-era client hears it this way
    return "added drain_node"


class Rollout(BaseModel):
    version: str = Field(description="the version to roll out, like 2.4.1")
    canary: bool = Field(default=False, description="first to one pod only")


def ask_rollout(service: str) -> Elicit[Rollout]:
    return Elicit(f"Which version of {service} should I roll out?", Rollout)


@server.tool()
def rollout(service: str, answer: Annotated[ElicitationResult[Rollout], Resolve(ask_rollout)]) -> str:
    """Roll a service out to a version the person picks during the call."""
    if isinstance(answer, AcceptedElicitation):
        return f"rolled out {service} {answer.data.version} (canary: {answer.data.canary})"
    return f"rollout of {service} not done: the person chose {answer.action}"


class NewKey(BaseModel):
    api_key: str = Field(description="the new API key")


def ask_key(service: str) -> Elicit[NewKey]:
    return Elicit(f"Paste the new API key for {service}", NewKey)


@server.tool()
def rotate_key(service: str, answer: Annotated[ElicitationResult[NewKey], Resolve(ask_key)]) -> str:
    """Asks for a secret through a form, which a client must never do."""
    if isinstance(answer, AcceptedElicitation):
        return f"key of {service} rotated"
    return f"key of {service} not rotated: {answer.action}"


@server.tool()
async def login(ctx: Context) -> str | InputRequiredResult:
    """Sends the person to a sign-in page (URL mode), then says what they chose."""
    answered = (ctx.input_responses or {}).get("login")
    if not isinstance(answered, ElicitResult):
        url = "https://sso.example.com/device?code=ABCD"
        ask = ElicitRequest(params=ElicitRequestURLParams(message="Sign in to the cluster", url=url))
        return InputRequiredResult(input_requests={"login": ask})
    return f"login: {answered.action}"


def serve_http() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("OPS_HTTP_PORT", "0"))))  # 0: a free port
    print(sock.getsockname()[1], flush=True)  # the test reads the port from the first line
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    print(f"ops-test MCP server starting ({sys.argv[1]})", file=sys.stderr, flush=True)  # a client logs it apart
    if sys.argv[1:] == ["http"]:
        serve_http()
    else:
        server.run("stdio")
