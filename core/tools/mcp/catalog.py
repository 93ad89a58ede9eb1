"""MCP servers as tool sources: the `[mcp]` section of the tools file and the tools the servers list now.

Pure data, no SDK and no I/O: `core.tools.mcp.client` connects and feeds the listings in. Each tool
of server `k8s` is named `k8s__<tool>` (a separator Anthropic's tool names allow, `^[a-zA-Z0-9_-]{1,64}$`,
and that a slash command keeps: `/k8s__scale_deployment`; `-` would not survive, commands read it as `_`).
Its approval policy comes from `[[mcp.policies]]` by glob pattern, first match wins; a tool no
pattern matches is gated with `[mcp].approvers`. What the server says of a tool (`readOnlyHint`,
`destructiveHint`, `idempotentHint`) is kept for cards and never relaxes a policy.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain.errors import ConfigError
from core.domain.toml_file import validated
from core.tools.registry import PLACEHOLDER, ApprovalPolicy, McpExecutor, ToolHints, ToolSpec

SEPARATOR = "__"
MAX_NAME = 64  # Anthropic's limit on a tool's name
SERVER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*(_[a-zA-Z0-9]+)*$")  # no "__": the separator stays unambiguous
log = logging.getLogger(__name__)


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerConfig(_Config):
    """One `[mcp.servers.<name>]`: a command speaking stdio, or a streamable-HTTP URL."""

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}  # variables for the server's process; values name ours: "{env:NAME}"
    cwd: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = {}  # e.g. Authorization = "Bearer {env:GRAFANA_MCP_TOKEN}"
    connect_timeout: float = Field(default=15, gt=0)  # seconds to start (or reach) it and list its tools
    timeout: float = Field(default=60, gt=0)  # a call's default; a policy may set its own
    # "legacy": the 2025 initialize handshake without the 2026-07-28 `server/discover` probe, for a server
    # that mishandles the probe; questions then come as `elicitation/create` requests during the call.
    protocol: Literal["auto", "legacy"] = "auto"
    ask_timeout: float = Field(default=900, gt=0)  # how long a person has to answer the server's question in a call

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("set either command (a stdio server) or url (a streamable-HTTP server)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("args, env and cwd are for a command; an HTTP server takes headers")
        if self.command is not None and self.headers:
            raise ValueError("headers are for an HTTP server; a command takes env")
        for kind, values in (("env", self.env), ("headers", self.headers)):
            for key, value in values.items():
                if not any(name.startswith("env:") for name in PLACEHOLDER.findall(value)):
                    raise ValueError(
                        f"{kind}.{key} must name the environment variable that holds it, as {{env:NAME}}: "
                        "secrets come from the environment, never from this file"
                    )
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def secret_names(self) -> set[str]:
        values = [*self.env.values(), *self.headers.values()]
        return {name[4:] for value in values for name in PLACEHOLDER.findall(value) if name.startswith("env:")}


class McpPolicy(_Config):
    """One `[[mcp.policies]]`: what the tools whose names match `match` (a glob) need."""

    match: str = Field(min_length=1)
    approval: ApprovalPolicy | None = None  # None: gated by [mcp].approvers
    idempotent: bool = False  # re-run after a worker died mid-call; the server's idempotentHint does not count
    callers: list[str] = []
    timeout: float | None = Field(default=None, gt=0)
    max_output: int = Field(default=8000, gt=0)


class McpSection(_Config):
    servers: dict[str, ServerConfig] = {}
    policies: list[McpPolicy] = []
    approvers: list[str] = []  # who approves an MCP tool that no policy names, or a policy with none


@dataclass(frozen=True)
class ListedTool:
    """A tool as a server lists it (`tools/list`), in the fields the bot uses."""

    name: str
    description: str
    input_schema: dict[str, Any]
    title: str = ""
    hints: Mapping[str, bool | None] = field(default_factory=dict)  # readOnlyHint -> read_only, ...


def tool_name(server: str, tool: str) -> str:
    """`k8s__scale_deployment`; characters a command would not keep (`-`, `.`) become `_`."""
    return f"{server}{SEPARATOR}{re.sub(r'[^A-Za-z0-9_]', '_', tool)}"


class McpCatalog:
    """The declared MCP servers, their policies, and the tools each lists now (replaced on every listing)."""

    def __init__(self, section: McpSection, path: Path | str = "tools file") -> None:
        self.servers = dict(section.servers)
        self.policies = list(section.policies)
        self.approvers = list(section.approvers)
        self.path = path
        self._listed: dict[str, dict[str, ToolSpec]] = {server: {} for server in self.servers}
        self.version = 0  # bumped on every change: a reader can tell its view is stale

    @classmethod
    def from_config(cls, path: Path, raw: Any, groups: Mapping[str, list[str]]) -> McpCatalog:
        section = validated(McpSection, raw, f"[mcp] in {path}")
        for name in section.servers:
            if not SERVER_NAME.match(name):
                raise ConfigError(
                    f"[mcp.servers.{name}] in {path}: a server's name is letters and digits, single _ between; "
                    "its tools are named <server>__<tool>"
                )
        entries = [*section.approvers]
        for policy in section.policies:
            entries += [*policy.callers, *(policy.approval.approvers if policy.approval else [])]
            entries += policy.approval.escalate_to if policy.approval else []
        for entry in entries:
            if entry.startswith("group:") and entry.removeprefix("group:") not in groups:
                raise ConfigError(f"[mcp] in {path} names unknown group {entry!r}; add it under [groups]")
        if section.servers and not section.approvers:
            raise ConfigError(
                f"[mcp] in {path} declares servers but no approvers: set [mcp].approvers, who approve the MCP "
                "tools no policy names (those are always gated)"
            )
        return cls(section, path)

    # What the registry asks.

    def names(self) -> list[str]:
        return [name for tools in self._listed.values() for name in tools]

    def server_of(self, name: str) -> str | None:
        server, sep, rest = name.partition(SEPARATOR)
        return server if sep and rest and server in self.servers else None

    def declares(self, name: str) -> bool:
        """`name` is in a declared server's namespace, listed or not (yet)."""
        return self.server_of(name) is not None

    def spec(self, name: str) -> ToolSpec | None:
        """The tool as listed now. While a server lists nothing (down, or not listed yet), any name in its
        namespace gets a stand-in that a call refuses cleanly; once it lists, a name it does not list is
        unknown (a typo is "unknown command", not the server's error)."""
        server = self.server_of(name)
        if server is None:
            return None
        listed = self._listed[server].get(name)
        if listed is not None or self._listed[server]:
            return listed
        description = f"A tool of MCP server {server} that it does not list now (not connected, or removed)."
        return self._spec(server, name, name.partition(SEPARATOR)[2], description, {"type": "object"}, ToolHints())

    def listed(self, server: str) -> list[str]:
        return list(self._listed.get(server, {}))

    # What the client feeds in.

    def replace(self, server: str, tools: list[ListedTool]) -> list[str]:
        """The server's listing, complete: it replaces the last one. Returns the names kept."""
        kept: dict[str, ToolSpec] = {}
        for tool in tools:
            name = tool_name(server, tool.name)
            if len(name) > MAX_NAME or name in kept:
                log.warning("MCP server %s: tool %r skipped: %s is too long or taken", server, tool.name, name)
                continue
            schema = tool.input_schema or {"type": "object"}
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.exceptions.SchemaError as exc:
                log.warning("MCP server %s: tool %r skipped: its input schema is invalid: %s", server, tool.name, exc)
                continue
            hints = ToolHints(title=tool.title, **{k: v for k, v in tool.hints.items() if v is not None})
            kept[name] = self._spec(server, name, tool.name, tool.description or tool.title or name, schema, hints)
        if kept != self._listed[server]:
            self._listed[server] = kept
            self.version += 1
        return list(kept)

    # Policies.

    def policy_for(self, name: str) -> McpPolicy | None:
        return next((policy for policy in self.policies if fnmatch.fnmatchcase(name, policy.match)), None)

    def _spec(
        self, server: str, name: str, tool: str, description: str, schema: dict[str, Any], hints: ToolHints
    ) -> ToolSpec:
        policy = self.policy_for(name)
        gate = ApprovalPolicy(required=True, approvers=self.approvers)
        approval = gate if policy is None or policy.approval is None else policy.approval
        if approval.required and not approval.approvers:
            approval = approval.model_copy(update={"approvers": self.approvers})
        executor = McpExecutor(kind="mcp", server=server, tool=tool)
        executor._live = self
        return ToolSpec(
            name=name,
            description=description,
            parameters=schema,
            executor=executor,
            approval=approval,
            callers=policy.callers if policy else [],
            idempotent=policy.idempotent if policy else False,
            timeout=(policy.timeout if policy and policy.timeout else None) or self.servers[server].timeout,
            max_output=policy.max_output if policy else 8000,
            hints=hints,
            source=f"mcp:{server}",
        )

    def secret_names(self) -> set[str]:
        return {name for server in self.servers.values() for name in server.secret_names()}
