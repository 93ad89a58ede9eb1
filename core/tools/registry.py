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
from typing import Annotated, Any, Literal, Protocol

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from core.domain.durations import Seconds
from core.domain.errors import ConfigError, InvalidToolCall
from core.domain.people import who
from core.domain.toml_file import load_toml, validated

ASK_HUMAN = "ask_human"
REPLY = "reply"
BUILTIN_TOOLS = (ASK_HUMAN, REPLY)
MAX_OPTIONS = 10  # choices on one question: what a Slack or Discord select shows comfortably
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


class LiveTools(Protocol):
    """Tools that come and go while the bot runs: the MCP servers' (`core.tools.mcp.catalog.McpCatalog`)."""

    def names(self) -> list[str]: ...  # listed now

    def declares(self, name: str) -> bool: ...  # in a source's namespace, listed or not

    def spec(self, name: str) -> ToolSpec | None: ...  # as listed now (a stand-in while its source lists none)


class NamedTools(Protocol):
    """Tools known by the shape of their name rather than listed: the actions MCP callers ask approval
    for (`core.runtime.external`, `mcp:<action>`)."""

    def spec(self, name: str) -> ToolSpec | None: ...  # the tool `name` is, or None for a name not of its shape


class McpExecutor(_Spec):
    """A tool an MCP server lists (`[mcp.servers.<server>]`); never declared under [tools]."""

    kind: Literal["mcp"]
    server: str
    tool: str  # the server's own name for it
    # The catalog that keeps the tool's current spec: a registry holding an older copy of this spec
    # (an agent's, built at start) still sees what the server lists now.
    _live: LiveTools | None = PrivateAttr(default=None)


Executor = Annotated[CommandExecutor | HttpExecutor | PythonExecutor | McpExecutor, Field(discriminator="kind")]

PREVIEW_TIMEOUT = 20.0  # seconds a preview may take by default: the card waits for it


class _Timed(_Spec):
    # A preview runs before the card is posted, under the thread's lease: bounded, and short by default.
    timeout: float = Field(default=PREVIEW_TIMEOUT, gt=0, le=120)


class CommandPreview(CommandExecutor, _Timed):
    pass


class HttpPreview(HttpExecutor, _Timed):
    pass


class PythonPreview(PythonExecutor, _Timed):
    pass


# A tool's plan before apply (`core.runtime.previews`): an executor of the same kinds, with its own timeout.
Preview = Annotated[CommandPreview | HttpPreview | PythonPreview, Field(discriminator="kind")]


class ToolHints(_Spec):
    """What a tool's source says of it (an MCP server's annotations): shown on cards and in help, never
    trusted to relax a policy (the spec: clients must not rely on them from untrusted servers)."""

    title: str = ""
    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None

    def words(self) -> list[str]:
        """`["read-only"]`, `["destructive", "idempotent"]`...: what a card can show beside the tool."""
        found = [("read-only", self.read_only), ("destructive", self.destructive), ("idempotent", self.idempotent)]
        return [word for word, said in found if said] + (["open world"] if self.open_world else [])


class GrantPolicy(_Spec):
    """Standing grants (`core.runtime.grants`): an approver may answer a card with `grant 4h`, and the same
    requester's later calls of the tool with the same arguments (those in `vary` may differ) then run
    without a card until it expires or is revoked."""

    max_for: Seconds = Field(gt=0, le=7 * 86400)  # the longest grant an approver may give ("8h")
    when: dict[str, list[Any]] = {}  # only calls whose named arguments have one of these values
    vary: list[str] = []  # arguments a grant leaves open, e.g. ["version"]


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
    # Quorum: this many distinct approvers, or with `from_groups` one approver from each named group;
    # the first rejection ends the request either way.
    approvals: int = Field(default=1, ge=1, le=10)
    from_groups: list[str] = Field(default=[], max_length=10)
    wait: Seconds = Field(default=0, ge=0)  # no approval before this long after the request ("5m")
    valid_for: Seconds | None = Field(default=None, gt=0)  # an approval not acted on within this lapses
    # Change freezes and windows (config/calendar.toml): a gated call while frozen is refused, or with
    # "override" asks for approval and then also needs one from `freeze_override`.
    freeze: Literal["refuse", "override"] = "refuse"
    freeze_override: list[str] = []  # identities or group:NAME
    lock: str = ""  # a target lock from the arguments, "{service}/{environment}": one gated call per target
    grants: GrantPolicy | None = None  # standing grants; none unless the policy allows them

    @model_validator(mode="after")
    def _quorum(self) -> ApprovalPolicy:
        if self.from_groups and self.approvals not in (1, len(self.from_groups)):
            raise ValueError(
                f"approvals = {self.approvals} but from_groups names {len(self.from_groups)} groups; "
                "from_groups asks for one approver from each, so leave approvals out"
            )
        if self.wait >= self.expires_in:
            raise ValueError(f"wait ({self.wait}s) must be shorter than expires_in ({self.expires_in}s)")
        return self

    @model_validator(mode="after")
    def _grants(self) -> ApprovalPolicy:
        # A grant is one approver's word for later calls: it must not stand in for a quorum or skip a wait.
        if self.grants is not None and self.needed > 1:
            raise ValueError(
                f"grants are not allowed where a call needs {self.needed} approvals: one approver's grant would "
                "stand in for the quorum; remove grants or the quorum"
            )
        if self.grants is not None and self.wait:
            raise ValueError("grants are not allowed with a wait timer: a grant would skip the wait; remove one")
        return self

    @property
    def needed(self) -> int:
        """How many approvals the request needs."""
        return len(self.from_groups) or self.approvals

    @property
    def deciders(self) -> list[str]:
        """Who may decide: the approvers, and the members of every group `from_groups` names."""
        groups = [f"group:{group}" for group in self.from_groups]
        return [*self.approvers, *(entry for entry in groups if entry not in self.approvers)]

    def applies(self, args: Mapping[str, Any]) -> bool:
        if not self.required:
            return False
        return all(args.get(name) in values for name, values in self.when.items())

    @model_validator(mode="after")
    def _freeze_override(self) -> ApprovalPolicy:
        if self.freeze == "override" and not self.freeze_override:
            raise ValueError('freeze = "override" needs freeze_override, e.g. freeze_override = ["group:sre-leads"]')
        if self.freeze_override and self.freeze != "override":
            raise ValueError('freeze_override is set but freeze is "refuse"; set freeze = "override" or remove it')
        return self

    def lock_key(self, args: Mapping[str, Any]) -> str:
        """The target this call locks ("api/production"), or "" when the policy names no lock."""
        return PLACEHOLDER.sub(lambda found: str(args.get(found.group(1), "")), self.lock)


class ToolSpec(_Spec):
    name: str
    description: str
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    executor: Executor | None = None
    preview: Preview | None = None  # run before an approval card is posted; its output is on the card
    approval: ApprovalPolicy = ApprovalPolicy()
    # Stricter policies for some arguments ("production needs two"): the first whose `when` matches a call
    # governs it instead of `approval`, so an approver's edit can move a call into one of them.
    policies: list[ApprovalPolicy] = Field(default=[], max_length=10)
    callers: list[str] = []  # who may call it (identities or group:NAME); empty means anyone
    idempotent: bool = False
    timeout: float = Field(default=60, gt=0)
    max_output: int = Field(default=8000, gt=0)
    hints: ToolHints = ToolHints()  # the source's own description of the tool, for display only
    source: str = ""  # where the tool comes from when not this file: "mcp:k8s"

    @property
    def param_names(self) -> list[str]:
        return list(self.parameters.get("properties", {}))

    def policy(self, args: Mapping[str, Any]) -> ApprovalPolicy:
        """The approval policy that governs a call with `args`."""
        return next((policy for policy in self.policies if policy.applies(args)), self.approval)

    @property
    def every_policy(self) -> list[ApprovalPolicy]:
        return [self.approval, *self.policies]

    @property
    def gated(self) -> bool:
        """Some call of the tool needs an approval."""
        return any(policy.required for policy in self.every_policy)

    def definition(self) -> dict[str, Any]:
        """The tool as the model sees it."""
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}


_BUILTINS = {
    ASK_HUMAN: ToolSpec(
        name=ASK_HUMAN,
        description=(
            "Ask the requester a question and wait for their answer. Use when the request is ambiguous. "
            "Give `options` when the answer is one of a few choices: they are shown as buttons "
            "(a free-text answer is still accepted)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "question": {"type": "string", "minLength": 1},
                "options": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 75},
                    "maxItems": MAX_OPTIONS,
                    "uniqueItems": True,
                },
            },
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
    """The tools one agent may call, with the groups their approval policies name.

    `mcp`: the MCP servers' tools, as they list them now, are this registry's too (the whole file's
    registry, and the catalog of every command). A registry built from some of those specs (an
    agent's) has only those, each looked up live, so a re-listed schema or description takes effect.
    """

    def __init__(
        self,
        tools: Mapping[str, ToolSpec],
        groups: Mapping[str, list[str]],
        access: AccessRules | None = None,
        mcp: LiveTools | None = None,
        named: NamedTools | None = None,
    ) -> None:
        self._tools = {**tools, **_BUILTINS}
        self.named = named
        # compiled once per tool and schema: building one costs more than validating
        self._validators: dict[str, tuple[dict[str, Any], Any]] = {}
        self.groups = {name: list(members) for name, members in groups.items()}
        self.access = access or AccessRules()
        self.mcp = mcp
        self._live = mcp or next(
            (s.executor._live for s in tools.values() if isinstance(s.executor, McpExecutor) and s.executor._live),
            None,
        )

    def __contains__(self, name: object) -> bool:
        if name in self._tools:
            return True
        if not isinstance(name, str):
            return False
        return (self.mcp is not None and self.mcp.spec(name) is not None) or (
            self.named is not None and self.named.spec(name) is not None
        )

    def with_named(self, named: NamedTools) -> ToolRegistry:
        """This registry, also knowing the tools `named` recognises by their names."""
        tools = {name: spec for name, spec in self._tools.items() if name not in _BUILTINS}
        return ToolRegistry(tools, self.groups, self.access, mcp=self.mcp, named=named)

    def names(self) -> list[str]:
        if self.mcp is None:
            return list(self._tools)
        return [*self._tools, *(name for name in self.mcp.names() if name not in self._tools)]

    def get(self, name: str) -> ToolSpec:
        spec = self._tools.get(name)
        if self._live is not None and (spec is None and self.mcp is not None or _from_mcp(spec)):
            spec = self._live.spec(name) or spec
        if spec is None and self.named is not None:
            spec = self.named.spec(name)
        if spec is None:
            known = ", ".join(sorted(self.names()))
            raise InvalidToolCall(f"unknown tool {name!r}; known tools: {known}")
        return spec

    def definitions(self) -> list[dict[str, Any]]:
        return [self.get(name).definition() for name in self.names()]

    def validate(self, name: str, args: Any) -> dict[str, Any]:
        """Check a call against the tool's JSON schema; raise InvalidToolCall with one line saying why."""
        spec = self.get(name)
        if not isinstance(args, dict):
            raise InvalidToolCall(f"{name}: arguments must be an object, got {type(args).__name__}")
        schema, validator = self._validators.get(name, (None, None))
        if validator is None or schema is not spec.parameters:  # first use, or its source listed a new schema
            validator = jsonschema.Draft202012Validator(spec.parameters)
            self._validators[name] = (spec.parameters, validator)
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
        """`the oncall group (<who:cli:operator>, <who:slack:T1:U2>)` for people reading an approval request
        (the identities as `core.domain.people` markers, rendered by each channel)."""
        parts = []
        for entry in entries:
            if not entry.startswith("group:"):
                parts.append(who(entry))
                continue
            members = self.groups.get(entry.removeprefix("group:"), [])
            parts.append(f"the {entry.removeprefix('group:')} group ({', '.join(map(who, members)) or 'no members'})")
        return ", ".join(parts)


def _from_mcp(spec: ToolSpec | None) -> bool:
    return spec is not None and isinstance(spec.executor, McpExecutor)


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


def _check_preview(spec: ToolSpec) -> None:
    if spec.preview is None:
        return
    if not spec.gated:
        raise ConfigError(
            f"tool {spec.name!r} declares a preview, but no call of it needs approval, so no card would show "
            "it; remove the preview or set approval.required = true"
        )
    _check_placeholders(spec.model_copy(update={"executor": spec.preview}))


def _check_lock(spec: ToolSpec) -> None:
    for name in (name for policy in spec.every_policy for name in PLACEHOLDER.findall(policy.lock)):
        if name not in spec.param_names:
            raise ConfigError(
                f"tool {spec.name!r}: approval.lock names {{{name}}}, which is not one of its parameters "
                f"{spec.param_names}; name the arguments that identify the target"
            )


def _check_policies(spec: ToolSpec, groups: Mapping[str, list[str]]) -> None:
    name = spec.name
    for index, policy in enumerate(spec.policies):
        if not policy.required or not policy.when:
            raise ConfigError(
                f"tool {name!r}: policies[{index}] needs required = true and a `when` naming the arguments it "
                "governs; calls no stricter policy matches follow `approval`"
            )
    for policy in spec.every_policy:
        for entry in [*policy.deciders, *policy.escalate_to, *policy.freeze_override, *spec.callers]:
            if entry.startswith("group:") and entry.removeprefix("group:") not in groups:
                raise ConfigError(f"tool {name!r} names unknown approver group {entry!r}; add it under [groups]")
        if policy.required and not policy.deciders:
            raise ConfigError(f"tool {name!r} requires approval but lists no approvers; set approval.approvers")


def _check_grants(spec: ToolSpec) -> None:
    for policy in (policy for policy in spec.every_policy if policy.grants is not None):
        assert policy.grants is not None
        for name in [*policy.grants.vary, *policy.grants.when]:
            if name not in spec.param_names:
                raise ConfigError(
                    f"tool {spec.name!r}: approval.grants names the argument {name!r}, which is not one of its "
                    f"parameters {spec.param_names}; name the arguments a grant may cover"
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
        spec = validated(ToolSpec, {"name": name, **body}, f"tool {name!r} in {path}")
        if spec.executor is None:
            raise ConfigError(f"tool {name!r} in {path} has no executor; add [tools.{name}.executor]")
        if isinstance(spec.executor, McpExecutor):
            raise ConfigError(f"tool {name!r} in {path}: MCP tools are listed by their server; declare it in [mcp]")
        _check_schema(spec)
        _check_placeholders(spec)
        _check_preview(spec)
        _check_lock(spec)
        _check_grants(spec)
        _check_policies(spec, groups)
        tools[name] = spec
    mcp = None
    if "mcp" in raw:  # imported only for a file that declares MCP servers
        from core.tools.mcp.catalog import McpCatalog

        mcp = McpCatalog.from_config(path, raw["mcp"], groups)
        if clash := sorted(name for name in tools if mcp.declares(name)):
            raise ConfigError(f"tools {clash} in {path} are named like an MCP server's tools (<server>__); rename them")
    return ToolRegistry(tools, groups, _access(path, raw.get("access", {}), groups), mcp=mcp)


def _access(path: Path, raw: Any, groups: Mapping[str, list[str]]) -> AccessRules:
    access = validated(AccessRules, raw, f"[access] in {path}", fix="see config/tools.toml's comments")
    for entry in [*access.admins, *(e for entries in access.speak.values() for e in entries)]:
        if entry.startswith("group:") and entry.removeprefix("group:") not in groups:
            raise ConfigError(f"[access] in {path} names unknown group {entry!r}; add it under [groups]")
    return access
