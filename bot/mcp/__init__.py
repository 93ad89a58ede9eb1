"""The bot's approvals as an MCP server: `bot mcp` (stdio) and `/mcp` on `bot serve` (streamable HTTP).

Tools: `request_approval(action, arguments, reason)`, `ask_human(question, options)` and
`wait_for_decision(handle)`. Each request is a thread with a card (or a question) on the configured
channel, decided under the policies of `[mcp_server]` (`core.runtime.external`); everything lives in
Redis, so any process answers `wait_for_decision`, however late.
"""

from bot.mcp.requests import Requests
from bot.mcp.server import build_server
from bot.mcp.settings import McpSettings

__all__ = ["McpSettings", "Requests", "build_server"]
