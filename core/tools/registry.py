"""Tools as data (factor 4): specs loaded from config/tools.toml, validated calls, approval policy.

Execution lives in `core.tools.executors`; this module only describes tools and decides what a
call needs before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.domain.errors import ConfigError, InvalidToolCall
from core.domain.toml_file import load_toml

ASK_HUMAN = "ask_human"
REPLY = "reply"
BUILTIN_TOOLS = (ASK_HUMAN, REPLY)
PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_:]*)\}")
CONTEXT_PLACEHOLDERS = {"python", "requester", "thread_id", "data_dir", "call_id"}


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandExecutor(_Spec):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    env: list[str] = []  # environment variables passed through to the command


class HttpExecutor(_Spec):
    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    headers: dict[str, str] = {}  # values may use {env:NAME} for secrets


class PythonExecutor(_Spec):
    kind: Literal["python"]
    target: str = Field(pattern=r"^[\w.]+:\w+$")


Executor = Annotated[CommandExecutor | HttpExecutor | PythonExecutor, Field(discriminator="kind")]


class ApprovalPolicy(_Spec):
    required: bool = False
    when: dict[str, list[Any]] = {}  # only when every named argument has one of these values
    approvers: list[str] = []  # identities, or group:NAME
    allow_self: bool = False  # separation of duties unless a policy says otherwise
    expires_in: int = Field(default=3600, gt=0)
    notify: list[str] = []  # other channels that also get the request, e.g. ["email"]
    remind_before: int | None = Field(default=None, gt=0)  # seconds before the deadline to remind approvers
    escalate_to: list[str] = []  # a second approver group, asked after `escalate_after` seconds
    escalate_after: int | None = Field(default=None, gt=0)

    def applies(self, args: Mapping[str, Any]) -> bool:
        if not self.required:
            return False
        return all(args.get(name) in values for name, values in self.when.items())


class ToolSpec(_Spec):
    name: str
    description: str
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    executor: Executor | None = None
    approval: ApprovalPolicy = ApprovalPolicy()
    callers: list[str] = []  # who may call it (identities or group:NAME); empty means anyone
    idempotent: bool = False
    timeout: float = Field(default=60, gt=0)
    max_output: int = Field(default=8000, gt=0)

    @property
    def param_names(self) -> list[str]:
        return list(self.parameters.get("properties", {}))

    def definition(self) -> dict[str, Any]:
        """The tool as the model sees it."""
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}


_BUILTINS = {
    ASK_HUMAN: ToolSpec(
        name=ASK_HUMAN,
        description="Ask the requester a question and wait for their answer. Use when the request is ambiguous.",
        parameters={
            "type": "object",
            "properties": {"question": {"type": "string", "minLength": 1}},
            "required": ["question"],
            "additionalProperties": False,
        },
        idempotent=True,
    ),
    REPLY: ToolSpec(
        name=REPLY,
        description="Send the final answer for this request to the requester and end the turn.",
        parameters={
            "type": "object",
            "properties": {"message": {"type": "string", "minLength": 1}},
            "required": ["message"],
            "additionalProperties": False,
        },
        idempotent=True,
    ),
}


def args_hash(tool: str, args: Mapping[str, Any]) -> str:
    canonical = json.dumps({"tool": tool, "args": args}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class AccessRules(BaseModel):
    """Who may do what beyond their own threads: the `[access]` table of the tools file.

    Everyone may read and steer the threads they started, see the approvals they may decide, and
    start threads on the API's own channels (`api`, `web`). Beyond that:
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Read and steer every thread, see every approval, pause/resume others' threads, the dead letters.
    admins: list[str] = []
    # Start API threads rendered on a chat channel: {channel: [identities or group:name]}.
    speak: dict[str, list[str]] = {}
    # Read /metrics (admins may too): a Prometheus token's identity, say.
    metrics: list[str] = []
    # Start threads from a chat channel: {channel: [identities or group:name]}. A channel not named is open
    # to whoever the channel lets reach the bot (the Slack workspace, the Discord server, any mail sender).
    start: dict[str, list[str]] = {}


class ToolRegistry:
    """The tools one agent may call, with the groups their approval policies name."""

    def __init__(
        self, tools: Mapping[str, ToolSpec], groups: Mapping[str, list[str]], access: AccessRules | None = None
    ) -> None:
        self._tools = {**tools, **_BUILTINS}
        self._validators: dict[str, Any] = {}  # compiled once per tool: building one costs more than validating
        self.groups = {name: list(members) for name, members in groups.items()}
        self.access = access or AccessRules()

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> ToolSpec:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools))
            raise InvalidToolCall(f"unknown tool {name!r}; known tools: {known}") from None

    def definitions(self) -> list[dict[str, Any]]:
        return [spec.definition() for spec in self._tools.values()]

    def validate(self, name: str, args: Any) -> dict[str, Any]:
        """Check a call against the tool's JSON schema; raise InvalidToolCall with one line saying why."""
        spec = self.get(name)
        if not isinstance(args, dict):
            raise InvalidToolCall(f"{name}: arguments must be an object, got {type(args).__name__}")
        validator = self._validators.get(name)
        if validator is None:
            validator = self._validators[name] = jsonschema.Draft202012Validator(spec.parameters)
        error = jsonschema.exceptions.best_match(validator.iter_errors(args))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "arguments"
            raise InvalidToolCall(f"{name}: {where}: {error.message}")
        return args

    def is_member(self, identity: str, entries: list[str]) -> bool:
        """True when `identity` is listed itself or belongs to a listed `group:NAME`."""
        for entry in entries:
            if entry == identity:
                return True
            if entry.startswith("group:") and identity in self.groups.get(entry.removeprefix("group:"), []):
                return True
        return False

    def may_start(self, identity: str, channel: str) -> bool:
        """Whether `identity` may start a thread on `channel` ([access].start; unnamed channels are open)."""
        allowed = self.access.start.get(channel)
        return allowed is None or self.is_member(identity, [*allowed, *self.access.admins])

    def may_call(self, identity: str, spec: ToolSpec) -> bool:
        return not spec.callers or self.is_member(identity, spec.callers)

    def may_approve(self, identity: str, approvers: list[str], requester: str, allow_self: bool) -> bool:
        """Deterministic permission check; the same code runs when a decision arrives and before execution."""
        if not allow_self and identity == requester:
            return False
        return self.is_member(identity, approvers)

    def shown_approvers(self, entries: list[str], requester: str, allow_self: bool) -> list[str]:
        """Who a card names as approvers: every member, the requester only where they may approve their own."""
        return [member for member in self.members(entries) if allow_self or member != requester]

    def members(self, entries: list[str]) -> list[str]:
        """Every identity the entries name, groups expanded, in order, without repeats."""
        found: list[str] = []
        for entry in entries:
            group = self.groups.get(entry.removeprefix("group:"), []) if entry.startswith("group:") else [entry]
            found += [member for member in group if member not in found]
        return found

    def describe(self, entries: list[str]) -> str:
        """`group:oncall (cli:operator, slack:T1:U2)` for people reading an approval request."""
        parts = []
        for entry in entries:
            members = self.groups.get(entry.removeprefix("group:"), []) if entry.startswith("group:") else []
            parts.append(f"{entry} ({', '.join(members) or 'no members'})" if entry.startswith("group:") else entry)
        return ", ".join(parts)


def _check_placeholders(spec: ToolSpec) -> None:
    templates: list[str] = []
    if isinstance(spec.executor, CommandExecutor):
        templates = spec.executor.argv
    elif isinstance(spec.executor, HttpExecutor):
        templates = [spec.executor.url]
    allowed = set(spec.param_names) | CONTEXT_PLACEHOLDERS
    for template in templates:
        for name in PLACEHOLDER.findall(template):
            if name not in allowed:
                raise ConfigError(
                    f"tool {spec.name!r}: placeholder {{{name}}} is neither a parameter nor one of "
                    f"{sorted(CONTEXT_PLACEHOLDERS)}; declare it under [tools.{spec.name}.parameters.properties]"
                )


def _check_schema(spec: ToolSpec) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(spec.parameters)
    except jsonschema.exceptions.SchemaError as exc:
        raise ConfigError(f"tool {spec.name!r}: parameters is not a valid JSON schema: {exc.message}") from exc
    if spec.parameters.get("type") != "object":
        raise ConfigError(f'tool {spec.name!r}: parameters must have type = "object"')


def load_tools(path: Path, extra_members: Mapping[str, list[str]] | None = None) -> ToolRegistry:
    """Load and check config/tools.toml; every problem is a ConfigError naming the tool and the fix."""
    raw = load_toml(path, "tools file", missing="set BOT_TOOLS_FILE to a tools.toml")
    groups: dict[str, list[str]] = {name: list(members) for name, members in raw.get("groups", {}).items()}
    for name, members in (extra_members or {}).items():
        groups[name] = sorted({*groups.get(name, []), *members})
    tools: dict[str, ToolSpec] = {}
    for name, body in raw.get("tools", {}).items():
        if name in BUILTIN_TOOLS:
            raise ConfigError(f"tool {name!r} in {path} shadows a built-in tool; rename it")
        try:
            spec = ToolSpec.model_validate({"name": name, **body})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"tool {name!r} in {path}: {where}: {first['msg']}") from exc
        if spec.executor is None:
            raise ConfigError(f"tool {name!r} in {path} has no executor; add [tools.{name}.executor]")
        _check_schema(spec)
        _check_placeholders(spec)
        for entry in [*spec.approval.approvers, *spec.approval.escalate_to, *spec.callers]:
            if entry.startswith("group:") and entry.removeprefix("group:") not in groups:
                raise ConfigError(f"tool {name!r} names unknown approver group {entry!r}; add it under [groups]")
        if spec.approval.required and not spec.approval.approvers:
            raise ConfigError(f"tool {name!r} requires approval but lists no approvers; set approval.approvers")
        tools[name] = spec
    return ToolRegistry(tools, groups, _access(path, raw.get("access", {}), groups))


def _access(path: Path, raw: Any, groups: Mapping[str, list[str]]) -> AccessRules:
    try:
        access = AccessRules.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"[access] in {path}: {where}: {first['msg']}; see config/tools.toml's comments") from exc
    for entry in [*access.admins, *(e for entries in access.speak.values() for e in entries)]:
        if entry.startswith("group:") and entry.removeprefix("group:") not in groups:
            raise ConfigError(f"[access] in {path} names unknown group {entry!r}; add it under [groups]")
    return access
