"""The MCP server's settings, from the environment (the rest is `[mcp_server]` in the tools file)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from config.channels import env_values, validated
from config.settings import Settings


class McpSettings(BaseModel):
    """Each field's alias is the environment variable that sets it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    identity: str = Field("", alias="BOT_MCP_IDENTITY")  # who `bot mcp` (stdio) asks as; default the terminal's
    # How long a request waits for the decision before it answers with a handle: under the usual MCP
    # client timeouts (60 s in most SDKs and in Claude Code), so the answer arrives before the client gives up.
    wait_seconds: float = Field(50.0, gt=0, le=3600, alias="BOT_MCP_WAIT_SECONDS")
    progress_seconds: float = Field(5.0, gt=0, alias="BOT_MCP_PROGRESS_SECONDS")  # between progress notifications

    @classmethod
    def from_env(cls, env: Mapping[str, str], settings: Settings) -> McpSettings:
        values = env_values(cls, env)
        values.setdefault("identity", settings.cli_identity)
        return validated(cls, values)
