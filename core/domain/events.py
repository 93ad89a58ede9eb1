"""The thread's events and the channel seam's models: frozen, validated values.

Events are the only state of a thread (factor 5). `ThreadState` is derived from them by
`core.domain.reducer.reduce`. `Trigger` is what a channel hands to the core; `Outbound` is what the
core hands back for a channel to render.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1
DEFAULT_SNOOZE = 30 * 60  # seconds an approver's "not now" puts a request off when they name no time
SHORT_DIGEST = 12  # hex characters of an approval's digest shown on cards and accepted in decisions

ApprovalDecision = Literal["approve", "reject"]
Verdict = Literal["approve", "reject", "expire"]  # "expire": the deadline passed without a decision


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Event(_Frozen):
    v: int = SCHEMA_VERSION
    id: str
    at: datetime
    actor: str


class ThreadStarted(_Event):
    type: Literal["thread_started"] = "thread_started"
    agent: str
    channel: str
    conversation: str
    requester: str
    reply_to: dict[str, str] = {}


class UserMessage(_Event):
    type: Literal["user_message"] = "user_message"
    text: str
    trigger_id: str
    context: dict[str, str] = {}  # where the person was, as the channel knows it (MessageTrigger.context)


class Usage(_Frozen):
    """What one model call cost: the prompt (name and hash), the model, tokens and latency. A model
    returns it with its choice; the thread records it as a `ModelCall` event, these same fields."""

    prompt_name: str
    prompt_hash: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: float = 0.0


class ModelCall(Usage, _Event):
    type: Literal["model_call"] = "model_call"


class ToolCall(_Event):
    type: Literal["tool_call"] = "tool_call"
    call_id: str
    tool: str
    args: dict[str, Any]
    reason: str = ""
    # A gated call made during a change freeze (or outside every allowed window) under `freeze = "override"`:
    # the freeze's name and when it ends; its approval also needs the policy's `freeze_override`.
    freeze: str = ""
    freeze_until: datetime | None = None


class ToolStarted(_Event):
    type: Literal["tool_started"] = "tool_started"
    call_id: str
    tool: str


class ToolResult(_Event):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    tool: str
    output: str
    duration_ms: float = 0.0


class ToolPreviewed(_Event):
    """A gated call's preview (`core.runtime.previews`), run before its approval card was posted; committed
    with the request. `output` is the preview's whole text, redacted and capped, or the failure's line."""

    type: Literal["tool_previewed"] = "tool_previewed"
    call_id: str
    tool: str
    ok: bool
    output: str
    duration_ms: float = 0.0


ToolErrorKind = Literal["invalid", "failed", "rejected", "interrupted", "expired"]


class ToolErrorEvent(_Event):
    type: Literal["tool_error"] = "tool_error"
    call_id: str
    tool: str
    error: str
    kind: ToolErrorKind = "failed"


class ApprovalTerms(_Frozen):
    """What an approval asks for: the call, its arguments and their hash, who may approve it, and until
    when. The thread records it as an `ApprovalRequested` event, these same fields; the reducer keeps it
    as the thread's pending approval until it is decided."""

    approval_id: str
    call_id: str
    tool: str
    args: dict[str, Any]
    args_hash: str
    approvers: list[str]
    requester: str
    allow_self: bool
    expires_at: datetime
    digest: str = ""  # of (tool, arguments, thread): a decision for any other digest is refused
    needed: int = 1  # approvals the quorum needs


class ApprovalRequested(ApprovalTerms, _Event):
    type: Literal["approval_requested"] = "approval_requested"


class ApprovalVoted(_Event):
    """One approval towards a quorum that is not complete yet: the thread keeps waiting."""

    type: Literal["approval_voted"] = "approval_voted"
    approval_id: str
    call_id: str
    by: str
    channel: str = ""
    count: int  # approvals that count so far, this one included
    needed: int
    trigger_id: str = ""


class ApprovalSnoozed(_Event):
    """An approver said "not now": the card is asked again at `until`. No decision; expiry, reminders and
    escalation keep their own clock (`core.runtime.snoozes`)."""

    type: Literal["approval_snoozed"] = "approval_snoozed"
    approval_id: str
    call_id: str
    by: str
    channel: str = ""
    until: datetime
    trigger_id: str = ""


class ArgumentsEdited(_Event):
    """An approver changed the call's arguments before approving: the request for the old arguments ends
    (its record is "edited"), and a new one, for `after` under the policy that governs them, follows in
    the same commit. The call keeps its id: the model is told it ran with these arguments."""

    type: Literal["arguments_edited"] = "arguments_edited"
    approval_id: str  # the request the edit ended
    call_id: str
    tool: str
    before: dict[str, Any]
    after: dict[str, Any]
    by: str
    channel: str = ""
    digest_before: str = ""
    digest_after: str = ""
    trigger_id: str = ""

    @property
    def changes(self) -> str:
        """`environment: staging → production, replicas: 2 → 3` (an argument removed shows as "(unset)")."""
        names = [n for n in {**self.before, **self.after} if self.before.get(n) != self.after.get(n)]
        return ", ".join(f"{n}: {_shown(self.before, n)} → {_shown(self.after, n)}" for n in names)


def _shown(args: dict[str, Any], name: str) -> str:
    return json.dumps(args[name], ensure_ascii=False) if name in args else "(unset)"


class ApprovalDecided(_Event):
    type: Literal["approval_decided"] = "approval_decided"
    approval_id: str
    call_id: str
    decision: Verdict
    comment: str = ""
    trigger_id: str = ""
    channel: str = ""  # where the deciding answer came from
    approved_by: list[str] = []  # a quorum's approvers, in the order they approved
    override_by: str = ""  # who approved overriding a change freeze (`ToolCall.freeze`)


class GrantGiven(_Event):
    """An approver approved the call and also gave its requester a standing grant (`core.runtime.grants`):
    recorded with the decision; the grant itself is stored apart, to be listed and revoked."""

    type: Literal["grant_given"] = "grant_given"
    grant_id: str
    approval_id: str
    call_id: str
    tool: str
    requester: str
    pattern: str  # what it covers: `service=api environment=staging version=*`
    by: str
    channel: str = ""
    expires_at: datetime
    trigger_id: str = ""


class GrantUsed(_Event):
    """A gated call matched a live standing grant and runs without a card; committed with the call and its start."""

    type: Literal["grant_used"] = "grant_used"
    grant_id: str
    call_id: str
    tool: str
    granted_by: str
    args_hash: str
    digest: str  # of (tool, arguments, thread), as an approval of this call would cover
    expires_at: datetime


class HumanQuestion(_Event):
    type: Literal["human_question"] = "human_question"
    call_id: str
    question: str
    options: list[str] = []  # choices offered (a free-text answer is always accepted too)
    asks: str = ""  # who may answer; empty: the thread's requester


class HumanAnswer(_Event):
    type: Literal["human_answer"] = "human_answer"
    text: str
    trigger_id: str
    choice: str = ""  # the option chosen (by a button, its number or its text); empty for a free answer


class AgentReply(_Event):
    type: Literal["agent_reply"] = "agent_reply"
    text: str


class Paused(_Event):
    type: Literal["paused"] = "paused"
    reason: str = ""
    trigger_id: str = ""


class Resumed(_Event):
    type: Literal["resumed"] = "resumed"
    trigger_id: str = ""


class DeliveryFailed(_Event):
    """A channel could not show an outbound message and gave up (a permanent refusal, or retries ran out)."""

    type: Literal["delivery_failed"] = "delivery_failed"
    outbound_id: str
    channel: str
    outbound_kind: str
    error: str
    trigger_id: str = ""


class Escalated(_Event):
    type: Literal["escalated"] = "escalated"
    reason: str


class Failed(_Event):
    type: Literal["failed"] = "failed"
    error: str


ElicitAction = Literal["accept", "decline", "cancel"]


class ServerAsked(_Event):
    """An MCP server asked the thread's person something during a running tool's call (`elicitation/create`).

    `fields` are the form's field names (form mode); `url` the page to open (URL mode). The answer comes
    back as a `ServerAnswered` while the tool is still running (`core.runtime.asking`)."""

    type: Literal["server_asked"] = "server_asked"
    call_id: str
    ask_id: str
    server: str
    message: str
    fields: list[str] = []
    url: str = ""
    asks: str = ""


class ServerAnswered(_Event):
    """How the person answered a `ServerAsked`: accept with `content`, decline, or cancel (a timeout too)."""

    type: Literal["server_answered"] = "server_answered"
    call_id: str
    ask_id: str
    action: ElicitAction
    content: dict[str, Any] = {}
    trigger_id: str = ""


class HandedOff(_Event):
    """The thread moves to another agent (factor 10), keeping its id and everything said so far.

    `note` is what the next agent needs to know; `call_id` is the `hand_to_<agent>` call that
    asked for it, empty when the router moved the thread (a slash command for another agent's tool).
    """

    type: Literal["handed_off"] = "handed_off"
    from_agent: str
    to_agent: str
    note: str = ""
    call_id: str = ""


Event = Annotated[
    ThreadStarted
    | UserMessage
    | ModelCall
    | ToolCall
    | ToolStarted
    | ToolResult
    | ToolErrorEvent
    | ToolPreviewed
    | ApprovalRequested
    | ApprovalVoted
    | ApprovalSnoozed
    | ArgumentsEdited
    | ApprovalDecided
    | GrantGiven
    | GrantUsed
    | HumanQuestion
    | HumanAnswer
    | AgentReply
    | Paused
    | Resumed
    | Escalated
    | Failed
    | HandedOff
    | DeliveryFailed
    | ServerAsked
    | ServerAnswered,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: str | bytes) -> Event:
    return EVENT_ADAPTER.validate_json(data)


# --- the channel seam -------------------------------------------------------------------


class _Trigger(_Frozen):
    v: int = SCHEMA_VERSION
    id: str
    channel: str
    conversation: str
    sender: str
    dedup_key: str = ""
    reply_to: dict[str, str] = {}
    thread_id: str = ""
    # The publisher's trace context (W3C traceparent / tracestate, `core.obs.tracing`); empty when not
    # tracing, and then left out of the stored JSON, so workers that predate the field read it too.
    trace: dict[str, str] = {}


class MessageTrigger(_Trigger):
    """Text from a person: a request, a command, or an answer to a question."""

    kind: Literal["message"] = "message"
    text: str
    agent: str = ""
    answers: str = ""  # a choice button's click: the call id of the question it answers (`text` is the option)
    # Where the person is as the channel knows it, for the model to read beside the text: e.g. Slack's
    # assistant thread gives {"viewing": "<#C123>"}, the channel open beside it. Keys are lowercase words.
    context: dict[str, Annotated[str, Field(max_length=200)]] = Field(default={}, max_length=8)


class DecisionTrigger(_Trigger):
    """An approve / reject answer to an approval request, from any channel."""

    kind: Literal["decision"] = "decision"
    approval_id: str
    decision: ApprovalDecision
    comment: str = ""
    digest: str = ""  # the digest the card showed (its first characters will do); empty: not checked
    # An approval with edited arguments (approve only): these replace the call's, an argument set to null is
    # removed; text channels write them as `name=value` in the comment instead (`core.tools.edits`).
    args: dict[str, Any] | None = None
    # Approve and give the requester a standing grant for this long (seconds; 0: the policy's longest); text
    # channels write `grant 4h` in the comment instead (`core.domain.grants.asked_grant`).
    grant_for: int | None = Field(default=None, ge=0)


class SnoozeTrigger(_Trigger):
    """Not now: an approver asks for the approval request again in `seconds`, without deciding it."""

    kind: Literal["snooze"] = "snooze"
    approval_id: str
    seconds: int = Field(default=DEFAULT_SNOOZE, gt=0)  # the buttons' "Not now (30 min)"
    digest: str = ""  # the digest the card showed, checked as a decision's is


class ControlTrigger(_Trigger):
    """Pause or resume a thread (factor 6); from the sweepers: expire an approval whose deadline passed,
    re-drive a thread a dead worker left in flight, record a message a channel could not deliver."""

    kind: Literal["control"] = "control"
    action: Literal["pause", "resume", "expire", "redrive", "undeliverable", "wake"]  # wake: a snooze ended
    reason: str = ""
    approval_id: str = ""
    outbound_id: str = ""  # undeliverable: which message, of which kind
    outbound_kind: str = ""


Trigger = Annotated[MessageTrigger | DecisionTrigger | SnoozeTrigger | ControlTrigger, Field(discriminator="kind")]
TRIGGER_ADAPTER: TypeAdapter[Trigger] = TypeAdapter(Trigger)


class _Outbound(_Frozen):
    v: int = SCHEMA_VERSION
    id: str
    channel: str
    conversation: str
    thread_id: str
    reply_to: dict[str, str] = {}
    to: str = ""  # set when only this identity should see it (an ephemeral refusal)


class Reply(_Outbound):
    kind: Literal["reply"] = "reply"
    text: str
    final: bool = True


class ApprovalRequest(_Outbound):
    kind: Literal["approval_request"] = "approval_request"
    approval_id: str
    tool: str
    args: dict[str, Any]
    reason: str
    requester: str
    approvers: list[str]
    expires_at: datetime
    thread_url: str = ""  # the thread in the web console, when BOT_PUBLIC_URL is set
    digest: str = ""  # what an approval covers; cards show its first characters (`short`)
    needed: int = 1  # a quorum: sent again as approvals arrive, and channels update the card in place
    approved_by: list[str] = []
    open_groups: list[str] = []  # groups of `from_groups` still without an approver
    wait_until: datetime | None = None  # no approval before this (the card counts down)
    snoozed_until: datetime | None = None  # an approver said "not now": the card is asked again then
    snoozed_by: str = ""
    asked_again: bool = False  # a snooze ended: a channel that sends a request once (email) sends it again
    grant_max: int = 0  # seconds: the longest standing grant an approval may give with it (0: none)
    # The tool's preview (its plan before apply), redacted and cut to fit a card; `preview_more` characters
    # are left out (the whole text is in the thread, at `thread_url`). Failed: `preview` is the failure's line.
    preview: str = ""
    preview_failed: bool = False
    preview_more: int = 0

    @property
    def short(self) -> str:
        return self.digest[:SHORT_DIGEST]


class Question(_Outbound):
    kind: Literal["question"] = "question"
    question: str
    options: list[str] = []  # render as buttons or numbered choices; a free-text answer is accepted too
    asks: str = ""  # who may answer; empty: the thread's requester
    call_id: str = ""  # the ask_human call: a choice's click carries it back as MessageTrigger.answers
    form: dict[str, Any] = {}  # an MCP server's form (a flat JSON schema): channels that can show fields do
    link: str = ""  # an MCP server's page to open (URL mode); the question names its domain


class DecisionReceipt(_Outbound):
    """An approval was decided: channels edit their card to show who and when."""

    kind: Literal["decision_receipt"] = "decision_receipt"
    approval_id: str
    decision: Verdict
    by: str
    comment: str = ""
    at: datetime
    tool: str = ""  # so a channel can write the decided card as a sentence without its stored card


NoticeLevel = Literal["info", "warning", "error"]


class Notice(_Outbound):
    """Something went wrong with a request, or a refusal; says what happened and what to do."""

    kind: Literal["notice"] = "notice"
    text: str
    level: NoticeLevel = "info"


Outbound = Annotated[Reply | ApprovalRequest | Question | DecisionReceipt | Notice, Field(discriminator="kind")]
OUTBOUND_ADAPTER: TypeAdapter[Outbound] = TypeAdapter(Outbound)

OutboundT = TypeVar("OutboundT", Reply, ApprovalRequest, Question, DecisionReceipt, Notice)
