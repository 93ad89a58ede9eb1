"""Approvals and questions for actions that are not the bot's tools: what an MCP client asks for.

An agent elsewhere (a coding agent, a CI job) asks "may I run `deploy` with these arguments?" through
the bot's MCP server (`bot.mcp`). The request becomes a thread of its own, run by the `mcp` agent here:
its one step is the action as a gated call (tool `mcp:<action>`), so the card, the approvers,
`allow_self`, expiry, reminders, escalation, the single-use compare-and-set and the audit trail are a
configured tool's. Approving it runs nothing in the bot (the caller does the action itself); the thread
then ends with a reply. A question is an `ask_human` step. The caller reads the outcome from Redis (the
approval record and the thread's events, `outcome`), so any process can give it, hours later.

Policies come from `[mcp_server]` in the tools file: `[[mcp_server.policies]]` by glob pattern on the
action, first match wins; any other action is gated with `[mcp_server].approvers` (default the
`oncall` group). A server's or caller's word never relaxes a policy: every action is gated.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.domain import events as ev
from core.domain.durations import Seconds
from core.domain.errors import ConfigError
from core.domain.people import who
from core.domain.reducer import ThreadState
from core.domain.toml_file import load_toml, validated
from core.model.llm import Choice, ModelRequest
from core.redis.store import ApprovalRecord, Store
from core.runtime.roster import Profile, Roster
from core.tools.registry import ASK_HUMAN, REPLY, ApprovalPolicy, PythonExecutor, ToolRegistry, ToolSpec

AGENT = "mcp"  # the profile that runs these threads
PREFIX = "mcp:"  # an action's tool name: never one of the bot's own tools, whatever the caller names it
ACTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
MARKER = "mcp-request: "  # the launch message's last line: the request, as JSON
DEFAULT_GROUP = "oncall"


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActionPolicy(_Config):
    """One `[[mcp_server.policies]]`: who approves the actions its patterns match, for how long."""

    actions: list[str] = Field(min_length=1)  # glob patterns: "deploy*", "k8s.*"
    approvers: list[str] = Field(min_length=1)
    allow_self: bool = False
    expires_in: int = Field(default=3600, gt=0)
    notify: list[str] = []
    remind_before: int | None = Field(default=None, gt=0)
    escalate_to: list[str] = []
    escalate_after: int | None = Field(default=None, gt=0)
    approvals: int = Field(default=1, ge=1, le=10)  # quorum, as in a tool's approval policy
    from_groups: list[str] = []
    wait: Seconds = Field(default=0, ge=0)
    valid_for: Seconds | None = Field(default=None, gt=0)


class ServerConfig(_Config):
    """`[mcp_server]`: where requests are shown, who may make them, and the policy of any other action."""

    channel: str = "web"  # the channel whose conversation each request's thread lives in
    conversation: str = "mcp"  # e.g. a Slack channel id; each request is its own thread there
    callers: list[str] = []  # who may ask (identities or group:NAME); empty: any known identity
    answerers: list[str] = []  # who may answer questions; empty: the default approvers
    approvers: list[str] = [f"group:{DEFAULT_GROUP}"]
    allow_self: bool = False
    expires_in: int = Field(default=3600, gt=0)
    notify: list[str] = []
    policies: list[ActionPolicy] = []


class ExternalRequest(_Config):
    """What a caller asks: an approval for `action` with `arguments`, or a question."""

    kind: Literal["approval", "question"]
    action: str = ""
    arguments: dict[str, Any] = {}
    reason: str = ""
    question: str = ""
    options: list[str] = []

    def text(self, caller: str) -> str:
        """The thread's launch message: a line people can read, then the request itself."""
        if self.kind == "approval":
            headline = f"{caller} asks approval (through MCP) to run {self.action}: {self.reason}"
        else:
            headline = f"{caller} asks (through MCP): {self.question}"
        return f"{headline}\n{MARKER}{self.model_dump_json()}"

    @classmethod
    def parse(cls, text: str) -> ExternalRequest | None:
        last = text.rstrip().rpartition("\n")[2]
        if not last.startswith(MARKER):
            return None
        try:
            return cls.model_validate_json(last.removeprefix(MARKER))
        except ValidationError:
            return None


def acknowledge(**arguments: Any) -> str:
    """The executor of every action: approving it runs nothing here, the caller does the action."""
    return "approved; the caller that asked through MCP runs it"


class ExternalActions:
    """The actions MCP callers ask approval for, each a gated tool spec built from its policy."""

    def __init__(self, config: ServerConfig, groups: Mapping[str, list[str]]) -> None:
        self.config = config
        self.groups = groups

    def tool_name(self, action: str) -> str:
        if not ACTION.match(action):
            raise ValueError(
                f"action {action[:40]!r} is not a name like deploy or k8s.scale_deployment "
                "(letters, digits and _ . : / -, up to 100)"
            )
        return PREFIX + action

    def policy(self, action: str) -> ApprovalPolicy:
        match = next((p for p in self.config.policies if any(fnmatch.fnmatchcase(action, g) for g in p.actions)), None)
        source: Any = match or self.config
        return ApprovalPolicy(
            required=True,  # every action is gated: nothing the caller says relaxes it
            approvers=source.approvers,
            allow_self=source.allow_self,
            expires_in=source.expires_in,
            notify=source.notify,
            remind_before=getattr(source, "remind_before", None),
            escalate_to=getattr(source, "escalate_to", []),
            escalate_after=getattr(source, "escalate_after", None),
            approvals=getattr(source, "approvals", 1),
            from_groups=getattr(source, "from_groups", []),
            wait=getattr(source, "wait", 0),
            valid_for=getattr(source, "valid_for", None),
        )

    def spec(self, name: str) -> ToolSpec | None:
        """The gated spec of tool `mcp:<action>`, or None for any other name."""
        action = name.removeprefix(PREFIX)
        if not name.startswith(PREFIX) or not ACTION.match(action):
            return None
        return ToolSpec(
            name=name,
            description=f"{action}, asked for through the bot's MCP server; the caller runs it once approved",
            parameters={"type": "object"},
            executor=PythonExecutor(kind="python", target="core.runtime.external:acknowledge"),
            approval=self.policy(action),
            idempotent=True,  # it runs nothing: a dead worker's "run" is simply taken again
            timeout=10,
        )

    def registry(self, base: ToolRegistry) -> ToolRegistry:
        """`base` that also knows the actions, so a decision applied by any worker finds its spec."""
        return base.with_named(self)

    def may_call(self, tools: ToolRegistry, identity: str) -> bool:
        return not self.config.callers or tools.is_member(identity, self.config.callers)

    def may_answer(self, tools: ToolRegistry, identity: str) -> bool:
        return tools.is_member(identity, self.config.answerers or self.config.approvers)

    def answerer(self, tools: ToolRegistry) -> Callable[[ThreadState, str], bool]:
        """For `Threads`: who else may answer the questions of this agent's threads."""
        return lambda state, sender: state.agent == AGENT and self.may_answer(tools, sender)

    def join(self, roster: Roster, tools: ToolRegistry) -> None:
        """Add the `mcp` agent to the roster (a workflow: it needs no language model)."""
        if AGENT in roster:
            raise ConfigError(f"{AGENT!r} is the name of the MCP server's agent; rename that agent or workflow")
        own = self.registry(ToolRegistry({}, tools.groups, tools.access))
        model = ExternalModel(self, tools)
        roster.profiles[AGENT] = Profile(AGENT, "workflow", "requests from MCP clients", own, model, step_limit=4)


def load_actions(path: Path, tools: ToolRegistry) -> ExternalActions | None:
    """`[mcp_server]` of the tools file, checked; None when it is absent and the default group is too."""
    raw = load_toml(path, "tools file", missing="set BOT_TOOLS_FILE to a tools.toml").get("mcp_server")
    if raw is None and DEFAULT_GROUP not in tools.groups:
        return None  # nobody to approve by default: the MCP server says how to configure it
    config = validated(ServerConfig, raw or {}, f"[mcp_server] in {path}")
    entries = [*config.callers, *config.answerers, *config.approvers]
    entries += [
        e for p in config.policies for e in (*p.approvers, *p.escalate_to, *(f"group:{g}" for g in p.from_groups))
    ]
    for entry in entries:
        if entry.startswith("group:") and entry.removeprefix("group:") not in tools.groups:
            raise ConfigError(f"[mcp_server] in {path} names unknown group {entry!r}; add it under [groups]")
    return ExternalActions(config, tools.groups)


class ExternalModel:
    """The `mcp` agent: the request's one step, then a reply saying how it ended."""

    def __init__(self, actions: ExternalActions, tools: ToolRegistry) -> None:
        self.actions = actions
        self.tools = tools

    async def choose(self, request: ModelRequest) -> Choice:
        history = await request.events()
        launch = next((e for e in history if isinstance(e, ev.UserMessage)), None)
        asked = ExternalRequest.parse(launch.text) if launch is not None else None
        if asked is None:
            return _reply("this thread takes requests from the bot's MCP server only; nothing was done")
        if not self.actions.may_call(self.tools, request.state.requester):
            return _reply("this identity may not ask through the MCP server ([mcp_server].callers); nothing was done")
        if any(isinstance(e, ev.AgentReply) for e in history):
            return _reply("this MCP request was answered already; the caller makes a new request for anything else")
        ended = _ending(history)
        if ended is not None:
            return _reply(ended)
        if asked.kind == "question":
            return Choice(ASK_HUMAN, {"question": asked.question, "options": asked.options}, asked.question)
        reason = asked.reason.strip() or f"asked through MCP by {who(request.state.requester)}"
        return Choice(self.actions.tool_name(asked.action), asked.arguments, reason)


def _reply(message: str) -> Choice:
    return Choice(REPLY, {"message": message}, "mcp: done")


def _ending(history: list[ev.Event]) -> str | None:
    """How the request's step ended, in a sentence for the thread; None while it has not."""
    for event in reversed(history):
        match event:
            case ev.ToolResult():
                return f"approved; the caller was told and runs {event.tool.removeprefix(PREFIX)} itself"
            case ev.ToolErrorEvent():
                return f"the caller was told: {event.error}"
            case ev.HumanAnswer():
                return "the caller was given the answer"
    return None


# --- what the caller is told ---------------------------------------------------------------------

Status = Literal["queued", "pending", "approved", "rejected", "expired", "answered", "failed"]
FINAL: tuple[Status, ...] = ("approved", "rejected", "expired", "answered", "failed")


class Decision(BaseModel):
    """A request's state for its caller: the decision (or answer) once there is one."""

    handle: str
    status: Status
    kind: Literal["approval", "question"] = "approval"
    message: str
    action: str = ""
    arguments: dict[str, Any] = {}  # what the decision answers for: run the action with exactly these
    args_hash: str = ""
    approval_id: str = ""
    approvers: list[str] = []
    expires_at: str = ""
    decided_by: str = ""
    decided_at: str = ""
    reason: str = ""  # why it was rejected, or failed
    answer: str = ""
    choice: str = ""  # the option picked, when the answer is one of them
    answered_by: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL


async def outcome(store: Store, handle: str) -> tuple[ThreadState, Decision]:
    """The request's thread and its decision as stored now; the approval record is the authority."""
    state = await store.load_state(handle)
    if state.seq == 0:
        return state, Decision(
            handle=handle, status="queued", message="no worker has taken the request yet; a bot worker must be running"
        )
    history = await store.load_events(handle)
    launch = next((e for e in history if isinstance(e, ev.UserMessage)), None)
    asked = ExternalRequest.parse(launch.text) if launch is not None else None
    if asked is None:
        return state, Decision(handle=handle, status="failed", message=f"{handle} is not an MCP request")
    base = Decision(handle=handle, status="pending", kind=asked.kind, message="", action=asked.action)
    if asked.kind == "question":
        return state, _answer(state, history, base)
    requested = next((e for e in reversed(history) if isinstance(e, ev.ApprovalRequested)), None)
    if requested is None:
        return state, _not_opened(state, history, base)
    record = await store.get_approval(requested.approval_id)
    return state, _verdict(record, history, base, requested)


def _not_opened(state: ThreadState, history: list[ev.Event], base: Decision) -> Decision:
    if state.status == "running":
        return base.model_copy(update={"message": "the approval request is being opened"})
    error = next((e.error for e in reversed(history) if isinstance(e, ev.ToolErrorEvent)), "")
    text = next((e.text for e in reversed(history) if isinstance(e, ev.AgentReply)), "")
    return base.model_copy(update={"status": "failed", "reason": error or text, "message": error or text})


def _verdict(
    record: ApprovalRecord | None, history: list[ev.Event], base: Decision, asked: ev.ApprovalRequested
) -> Decision:
    terms = {
        "arguments": asked.args,
        "args_hash": asked.args_hash,
        "approval_id": asked.approval_id,
        "approvers": asked.approvers,
        "expires_at": asked.expires_at.isoformat(),
    }
    if record is None:
        return base.model_copy(update={**terms, "status": "failed", "message": "the approval record is gone"})
    refused = next(
        (e for e in history if isinstance(e, ev.ToolErrorEvent) and e.call_id == record.call_id), None
    )  # the thread refused to go on after all (the approver is no longer allowed, the record changed)
    if record.status == "approved" and refused is not None and refused.kind == "rejected":
        status, reason = "rejected", refused.error
    else:
        status, reason = record.status, record.comment
    fields = {**terms, "status": status, "decided_by": record.decided_by, "decided_at": record.decided_at}
    messages = {
        "pending": f"waiting for a decision on approval {record.approval_id}",
        "approved": f"approved by {record.decided_by}: run {base.action} with exactly these arguments, once",
        "rejected": f"rejected by {record.decided_by or 'the bot'}: {reason or 'no reason given'}. Do not run it",
        "expired": f"approval {record.approval_id} expired with no decision. Do not run it; ask again if needed",
    }
    return base.model_copy(update={**fields, "reason": reason, "message": messages[status]})


def _answer(state: ThreadState, history: list[ev.Event], base: Decision) -> Decision:
    asked = next((i for i, e in enumerate(history) if isinstance(e, ev.HumanQuestion)), None)
    if asked is None:
        if state.status == "running":
            return base.model_copy(update={"message": "the question is being asked"})
        return _not_opened(state, history, base)
    answer = next((e for e in history[asked:] if isinstance(e, ev.HumanAnswer)), None)
    if answer is None:
        return base.model_copy(update={"message": "waiting for an answer"})
    said = json.dumps(answer.text)
    return base.model_copy(
        update={
            "status": "answered",
            "answer": answer.text,
            "choice": answer.choice,
            "answered_by": answer.actor,
            "message": f"{answer.actor} answered {said}",
        }
    )
