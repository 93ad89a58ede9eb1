"""The REST API's request and response bodies; /openapi.json is generated from these models.

Thread state and events are the core's own models (`ThreadState`, `Event`, `ApprovalRecord`),
so the API shows exactly what the store holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from core.domain import events as ev
from core.domain.audit import AuditRecord
from core.domain.reducer import Status, ThreadState
from core.redis.store import ApprovalRecord

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
MAX_TEXT = 4000

NOT_BLANK = r"\S"  # JSON Schema patterns search: "contains a non-space character"
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NOT_BLANK),
    AfterValidator(str.strip),
    Field(description="not blank"),
]
Comment = Annotated[str, StringConstraints(max_length=1000), AfterValidator(str.strip)]
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1000, pattern=NOT_BLANK),
    AfterValidator(str.strip),
    Field(description="why; not blank"),
]
ReplyTo = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=500)]], Field(max_length=16)
]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LaunchRequest(_Request):
    """Start a thread. The requester is the identity of the bearer token."""

    text: Text = Field(examples=["/deploy api 1.4.2 production"])
    agent: str | None = Field(None, max_length=64, description="the agent to run; default: the bot's agent")
    channel: str = Field("api", pattern=NAME_PATTERN, description="the channel that renders the thread's messages")
    conversation: str | None = Field(
        None, min_length=1, max_length=200, description="the channel's conversation key; default: a new one"
    )
    reply_to: ReplyTo = Field(default_factory=dict, description="what the channel needs to reply (e.g. a chat id)")


class InputRequest(_Request):
    text: Text


class ControlRequest(_Request):
    reason: Comment = ""


Digest = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{8,64}$",
        description="the approval's digest as its card shows it (at least 8 hex characters): the decision is "
        "refused when the call's arguments changed since",
    ),
]


class Approve(_Request):
    decision: Literal["approve"]
    comment: Comment = ""
    digest: Digest | None = None
    grant_for: int | None = Field(
        None,
        ge=0,
        le=7 * 86400,
        description="also give the requester a standing grant for this many seconds (0: the longest the tool's "
        "policy allows): their later calls of the same tool with the same arguments run without a card",
    )
    args: dict[str, Any] | None = Field(
        None,
        max_length=50,
        description="edit before approve: the arguments to change (name: value; null removes one), checked "
        "against the tool's schema and policy again; an edit into a stricter policy asks for that policy's "
        "approvals, and the new request has a new digest",
    )


class Reject(_Request):
    """A rejection always says why: the reason goes back to the agent (and the model)."""

    decision: Literal["reject"]
    comment: Reason
    digest: Digest | None = None


DecisionRequest = Annotated[Approve | Reject, Field(discriminator="decision")]


class Accepted(BaseModel):
    """The request was checked and enqueued; a worker applies it. Follow it with GET /v1/threads/{thread_id}."""

    thread_id: str
    trigger_id: str
    duplicate: bool = Field(False, description="true when this delivery was already accepted before")
    message: str = Field(default="", description="what the client should know beyond the acceptance, if anything")


class ThreadSummary(BaseModel):
    thread_id: str
    status: Status
    paused: bool
    agent: str
    channel: str
    conversation: str
    requester: str
    events: int
    steps: int
    updated_at: datetime | None
    pending_approval: str | None
    last_outcome: str

    @classmethod
    def of(cls, state: ThreadState) -> ThreadSummary:
        pending = state.pending_approval
        return cls(
            thread_id=state.thread_id,
            status=state.effective_status,
            paused=state.paused,
            agent=state.agent,
            channel=state.channel,
            conversation=state.conversation,
            requester=state.requester,
            events=state.seq,
            steps=state.steps,
            updated_at=state.updated_at,
            pending_approval=pending.approval_id if pending else None,
            last_outcome=state.last_outcome,
        )


class ThreadList(BaseModel):
    threads: list[ThreadSummary]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next (older) page; null: last page")


class EventPage(BaseModel):
    """Events of a thread after a position, in order."""

    events: list[ev.Event]
    next_after: int | None = Field(None, description="pass as `after` for the next page; null: no more events yet")


class ThreadDetail(BaseModel):
    """A thread now, its whole event log, and its derived state as of event `at` (time travel)."""

    thread: ThreadSummary
    at: int
    state: ThreadState
    events: list[ev.Event]


class ApprovalView(ApprovalRecord):
    expired: bool = Field(description="past its deadline: it can no longer be decided")
    may_decide: bool = Field(description="whether the caller is an allowed approver")
    approvers_described: str = Field(description="the approver entries with their members")
    snoozed: bool = Field(default=False, description="pending, and put off by an approver until `snoozed_until`")


class ApprovalList(BaseModel):
    approvals: list[ApprovalView]
    next_cursor: str | None = Field(
        None,
        description="pass as `cursor` for the next page; null: last page. A page may come short: it shows "
        "only approvals that match every filter and that the identity may see",
    )


class Me(BaseModel):
    identity: str = Field(description="who the bearer token acts as, e.g. web:alice")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


class DeadLetterView(BaseModel):
    id: str = Field(description="its id on the dead-letter stream")
    entry: str = Field(description="the inbox entry it was")
    trigger: str = Field(description="the trigger's JSON, secrets redacted")
    error: str = Field(description="why it was parked")


class DeadLetterList(BaseModel):
    letters: list[DeadLetterView]
    next_before: str | None = Field(None, description="pass as `before` for the next page; null at the end")


class AuditTrail(BaseModel):
    thread_id: str
    records: list[AuditRecord] = Field(
        description="the thread's approval facts in chain order: requested, voted, approved / rejected / expired, "
        "started, result; each with its position `n` in the whole chain, `prev` and `hash`"
    )
