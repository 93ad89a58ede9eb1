"""Small focused agents (factor 10): each a prompt, a handful of tools and a step limit.

`config/agents.toml` declares the agents, the router and the workflows; `load_roster` checks every
name against the tools and the prompts and builds one `Profile` for each. A thread records its
agent (`thread_started`, then each `handed_off`) and the agent loop looks the profile up at every
step, so a hand-off takes effect at once, on any process.

- An agent reads free text with its own prompt (`prompts/<name>.md`) and model; its slash commands
  run without a model (`CommandModel`) but only with its tools.
- The router's only tools are `hand_to_<agent>` (and `ask_human`, `reply`); it runs only when a
  language model is configured.
- A workflow is plain Python (`core.runtime.workflows`) that decides every step itself. It is launched by
  its own command (`/release api 1.4.3`) or a trigger that names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from core.domain.errors import ConfigError
from core.domain.toml_file import load_toml, validated
from core.model.llm import Model
from core.model.prompts import PromptLibrary
from core.runtime.workflows.engine import WorkflowModel
from core.tools.handoffs import HANDOFF_PREFIX, handoff_spec, handoff_tool
from core.tools.registry import ASK_HUMAN, BUILTIN_TOOLS, REPLY, ToolRegistry, ToolSpec

ROUTER = "router"
ROUTER_DESCRIPTION = "Picks the agent for a request."

Kind = Literal["agent", "router", "workflow"]
Effect = Literal["reply", "ask_human", "hand_off", "approval", "run"]
LanguageModels = Callable[[str], Model | None]  # prompt name -> the model that reads free text with it


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentConfig(_Config):
    description: str = Field(min_length=1)
    tools: list[str] = []
    hand_to: list[str] = []
    step_limit: int = Field(12, gt=0)


class RouterConfig(_Config):
    agents: list[str] = Field(min_length=1)
    step_limit: int = Field(3, gt=0)


class WorkflowConfig(AgentConfig):
    target: str = Field(pattern=r"^[\w.]+:\w+$")
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


class AgentsFile(_Config):
    router: RouterConfig | None = None
    agents: dict[str, AgentConfig] = Field(min_length=1)
    workflows: dict[str, WorkflowConfig] = {}


@dataclass(frozen=True)
class Profile:
    """One agent, the router or a workflow, as the loop runs it."""

    name: str
    kind: Kind
    description: str
    tools: ToolRegistry  # what its model may call: its tools, its hand-offs, ask_human and reply
    model: Model | None = None  # reads free text (an agent's prompt), or decides every step (a workflow)
    step_limit: int = 12
    handoffs: Mapping[str, str] = field(default_factory=dict)  # hand_to_<agent> tool -> agent

    def effect(self, spec: ToolSpec, args: Mapping[str, Any]) -> Effect:
        """What the loop does with a validated call. The approval gate is decided here, by the tool's
        policy and the arguments, whatever the model, the user or a tool's output said."""
        if spec.name == REPLY:
            return "reply"
        if spec.name == ASK_HUMAN:
            return "ask_human"
        if spec.name in self.handoffs:
            return "hand_off"
        if spec.policy(args).applies(args):
            return "approval"
        return "run"


class Roster:
    """Every profile by name; `default` takes what nothing else claims; `catalog` lists every command."""

    def __init__(self, profiles: Mapping[str, Profile], default: str, catalog: ToolRegistry) -> None:
        self.profiles = dict(profiles)
        self.default = default
        self.catalog = catalog

    @classmethod
    def single(cls, name: str, tools: ToolRegistry, model: Model | None, step_limit: int) -> Roster:
        """One agent with every tool: the bot before it had focused agents."""
        return cls({name: Profile(name, "agent", "the bot", tools, model, step_limit)}, name, tools)

    def __contains__(self, name: object) -> bool:
        return name in self.profiles

    def names(self) -> list[str]:
        return list(self.profiles)

    def get(self, name: str) -> Profile:
        """The thread's profile; a thread whose agent is no longer configured goes on with the default."""
        return self.profiles.get(name) or self.profiles[self.default]

    @property
    def router(self) -> Profile | None:
        """The router, when it has a model to read free text with."""
        profile = self.profiles.get(ROUTER)
        return profile if profile is not None and profile.model is not None else None

    def owner(self, tool: str) -> str | None:
        """The agent a slash command for `tool` goes to: the default agent if it has the tool, else the
        first agent declared with it; workflows own only their own command."""
        agents = [p for p in self.profiles.values() if p.kind == "agent"]
        agents.sort(key=lambda profile: profile.name != self.default)  # stable: declaration order otherwise
        return next((p.name for p in agents if tool in p.tools and tool not in BUILTIN_TOOLS), None)


def _read(path: Path) -> AgentsFile:
    raw = load_toml(path, "agents file", missing="set BOT_AGENTS_FILE to an agents.toml")
    return validated(AgentsFile, raw, f"agents file {path}")


def _check_names(path: Path, spec: AgentsFile, tools: ToolRegistry) -> None:
    names = [*spec.agents, *spec.workflows, *([ROUTER] if spec.router else [])]
    if ROUTER in spec.agents or ROUTER in spec.workflows:
        raise ConfigError(f"{path}: {ROUTER!r} is the router's name; rename that agent or workflow")
    for name in names:
        if not name.isidentifier() or not name.islower():
            raise ConfigError(f"{path}: agent name {name!r} must be lower-case letters, digits and _")
    if clash := set(spec.agents) & set(spec.workflows):
        raise ConfigError(f"{path}: {sorted(clash)} are both agents and workflows; rename one")
    for name in spec.workflows:
        if name in tools:
            raise ConfigError(f"{path}: workflow {name!r} has the name of a tool, so /{name} is ambiguous; rename it")
    for name in tools.names():
        if name.startswith(HANDOFF_PREFIX):
            raise ConfigError(f"tool {name!r}: the {HANDOFF_PREFIX} prefix is reserved for hand-offs; rename it")


def _check_references(path: Path, spec: AgentsFile, tools: ToolRegistry) -> None:
    entries: dict[str, AgentConfig] = {**spec.agents, **spec.workflows}
    for name, entry in entries.items():
        for tool in entry.tools:
            if tool not in tools or tool in BUILTIN_TOOLS:
                raise ConfigError(f"{path}: {name} lists tool {tool!r}, which the tools file does not declare")
        for target in entry.hand_to:
            if target not in spec.agents or target == name:
                raise ConfigError(f"{path}: {name} hands to {target!r}, which is not another agent in [agents]")
    for target in spec.router.agents if spec.router else []:
        if target not in spec.agents:
            raise ConfigError(f"{path}: the router hands to {target!r}, which is not an agent in [agents]")


def _profile(
    name: str, kind: Kind, entry: AgentConfig, spec: AgentsFile, tools: ToolRegistry, model: Model | None, cap: int
) -> Profile:
    """A profile's registry: its own tools, a `hand_to_<agent>` tool per agent it hands to, ask_human and reply."""
    own = {tool: tools.get(tool) for tool in entry.tools}
    targets = {handoff_tool(agent): agent for agent in entry.hand_to}
    handoffs = {tool: handoff_spec(agent, spec.agents[agent].description) for tool, agent in targets.items()}
    registry = ToolRegistry(own | handoffs, tools.groups, tools.access)
    return Profile(name, kind, entry.description, registry, model, min(entry.step_limit, cap), targets)


def _workflow(path: Path, name: str, entry: WorkflowConfig, launch: ToolSpec, tools: ToolRegistry) -> WorkflowModel:
    try:
        jsonschema.Draft202012Validator.check_schema(launch.parameters)
    except jsonschema.exceptions.SchemaError as exc:
        raise ConfigError(f"{path}: workflow {name!r}: parameters is not a valid JSON schema: {exc.message}") from exc
    module_name, _, attr = entry.target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{path}: workflow {name!r}: cannot import {entry.target}: {exc}") from exc
    return WorkflowModel(name, factory(), launch, tools.groups)


def load_roster(
    path: Path,
    tools: ToolRegistry,
    prompts: PromptLibrary,
    *,
    default: str,
    language: LanguageModels,
    step_limit: int,
) -> Roster:
    """Load and check config/agents.toml. `step_limit` (BOT_STEP_LIMIT) caps every profile's own limit."""
    spec = _read(path)
    _check_names(path, spec, tools)
    _check_references(path, spec, tools)
    if default not in spec.agents:
        raise ConfigError(f"BOT_AGENT={default!r} is not an agent in {path}; use one of {sorted(spec.agents)}")
    for name in [*spec.agents, *([ROUTER] if spec.router else [])]:
        prompts.template(name)  # a missing prompt file is a ConfigError now, not at the first message
    profiles = {
        name: _profile(name, "agent", entry, spec, tools, language(name), step_limit)
        for name, entry in spec.agents.items()
    }
    if spec.router is not None:
        entry = AgentConfig(
            description=ROUTER_DESCRIPTION, hand_to=spec.router.agents, step_limit=spec.router.step_limit
        )
        profiles[ROUTER] = _profile(ROUTER, "router", entry, spec, tools, language(ROUTER), step_limit)
    launchers: dict[str, ToolSpec] = {}
    for name, flow in spec.workflows.items():
        launchers[name] = ToolSpec(name=name, description=flow.description, parameters=flow.parameters)
        model = _workflow(path, name, flow, launchers[name], tools)
        profiles[name] = _profile(name, "workflow", flow, spec, tools, model, step_limit)
    commands = {name: tools.get(name) for name in tools.names() if name not in BUILTIN_TOOLS} | launchers
    return Roster(profiles, default, ToolRegistry(commands, tools.groups, tools.access, mcp=tools.mcp))
