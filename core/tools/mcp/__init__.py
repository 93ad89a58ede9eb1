"""MCP servers as tool sources: their tools listed into the registry under our policies, called through the SDK.

`catalog` is the `[mcp]` config and the tools listed now (no SDK); `client` holds the connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from core.tools.mcp.catalog import McpCatalog
from core.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from core.tools.mcp.client import McpClients

__all__ = ["McpCatalog", "clients"]


def clients(tools: ToolRegistry, env: Mapping[str, str], logs: Path | None = None) -> McpClients | None:
    """This process's connections to the servers the tools file declares; None (and no SDK import) without any.
    With `logs`, a stdio server's stderr goes to `<logs>/<server>.log` instead of the bot's own."""
    if not isinstance(tools.mcp, McpCatalog) or not tools.mcp.servers:
        return None
    from core.tools.mcp.client import McpClients

    return McpClients(tools.mcp, env, logs)
