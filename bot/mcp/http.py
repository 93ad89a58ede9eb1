"""`/mcp` on the bot's HTTP server: the MCP server over streamable HTTP, behind the API's bearer tokens.

A token from BOT_API_TOKENS acts as its identity, exactly as on the REST API (approval rules, admins,
rate limits per identity); a request without a known token is refused with 401 before the MCP layer
reads it. The transport is stateless (no session kept in this process): any `bot serve` behind a load
balancer answers any call, and the state of a request is in Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot.http.auth import TokenAuth
from bot.http.errors import error_response
from bot.main import Wiring
from bot.mcp.requests import Requests
from bot.mcp.server import build_server
from bot.mcp.settings import McpSettings

PATH = "/mcp"
IDENTITY = "bot.identity"  # where the endpoint leaves the caller's identity in the ASGI scope's state


class McpEndpoint:
    """Authenticates each request with the API's tokens, then hands it to the SDK's transport."""

    def __init__(self, manager: StreamableHTTPSessionManager, auth: TokenAuth) -> None:
        self.manager = manager
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        presented = _bearer(scope)
        refused = self.auth.refusal(presented)
        if refused is not None:
            message = f"{refused.message} (the MCP endpoint takes the same tokens as the REST API)"
            return await error_response(refused.status, refused.code, message, refused.headers)(scope, receive, send)
        identity = self.auth.identity(presented or "")
        assert identity is not None, "a token that is not refused has an identity"
        if self.auth.limits is not None and (over := await self.auth.limits.hit("identity", identity)):
            headers = {"Retry-After": str(over.retry_after)}
            return await error_response(429, "rate_limited", over.message, headers)(scope, receive, send)
        scope.setdefault("state", {})[IDENTITY] = identity
        await self.manager.handle_request(scope, receive, send)


def http_identity(ctx: Context) -> str:
    request: Any = ctx.request_context.request
    identity = getattr(request, "scope", {}).get("state", {}).get(IDENTITY)
    if not identity:  # only reachable if the endpoint above was bypassed
        raise ToolError("this request carries no identity; call /mcp with a bearer token from BOT_API_TOKENS")
    return str(identity)


def mount_mcp(app: FastAPI, wiring: Wiring, auth: TokenAuth, settings: McpSettings) -> None:
    """Serve the MCP server at `/mcp` on `app`; its transport starts and stops with the app."""
    requests = Requests(
        store=wiring.store, bus=wiring.bus, redis=wiring.redis, tools=wiring.tools, actions=wiring.actions
    )
    server = build_server(requests, settings, http_identity)
    # Host-header checks guard unauthenticated local servers from DNS rebinding; every call here needs a
    # bearer token a browser page cannot add, and the bot may sit behind a proxy with any host name.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    server.streamable_http_app(stateless_http=True, transport_security=security)  # builds the session manager
    manager = server.session_manager
    app.router.routes.insert(0, Route(PATH, McpEndpoint(manager, auth), methods=["GET", "POST", "DELETE"]))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        async with manager.run(), inner(served) as state:
            yield state

    app.router.lifespan_context = lifespan


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None
