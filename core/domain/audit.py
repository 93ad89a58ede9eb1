"""The audit trail of approvals: records derived from a thread's events, hash-chained, and verified.

Rules:
- Pure: no I/O, no clock. Records come from committed thread events (the thread log is the truth);
  `derive` folds a thread's events onto its `Cursor` (how far it was audited, which gated calls are
  open) and returns the facts; `chain` links facts onto the chain's head; `verify` checks a chain.
- One table, `FACTS`, says which event types are audit facts: a new event type is one line.
- A record's hash is SHA-256 of the previous record's hash and the record's canonical JSON (every
  field but `hash`, keys sorted, no spaces), so a changed, removed or reordered record breaks the chain.
- Records name the arguments by their digest (`args_hash`) and a result by its outcome and duration,
  never the arguments' values or the tool's output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.domain import events as ev
from core.domain.grants import Grant

GENESIS = "0" * 64  # the `prev` of the first record

Fact = Literal[
    "freeze_override",
    "requested",
    "edited",
    "voted",
    "snoozed",
    "approved",
    "rejected",
    "expired",
    "started",
    "result",
    "grant_given",
    "grant_used",
    "grant_revoked",
    "previewed",
]
Problem = Literal["changed", "removed", "reordered"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuditFact(_Frozen):
    """One approval-related fact, from one thread event; not chained yet."""

    at: datetime  # when it happened: the event's time
    thread_id: str
    seq: int  # the thread event it comes from
    event_id: str
    fact: Fact
    approval_id: str = ""
    call_id: str = ""
    tool: str = ""
    who: str = ""  # the identity that did it (the requester, the decider, "system" for an expiry)
    channel: str = ""
    source: str = ""  # what carried it: the decision's trigger, the deadline, the agent, the tool
    detail: dict[str, Any] = {}


class AuditRecord(AuditFact):
    """A fact at position `n` of the chain, linked to the record before it."""

    n: int
    prev: str
    hash: str


class GatedCall(_Frozen):
    """A call an approval was requested for, until its last fact (rejected, expired, or its result)."""

    approval_id: str
    tool: str
    args_hash: str
    digest: str = ""  # of (tool, arguments, thread), when the request had one
    approved_by: str = ""


class Cursor(_Frozen):
    """How far one thread was audited: through event `seq`, with the gated calls still open then."""

    seq: int = 0
    open: dict[str, GatedCall] = {}


@dataclass
class _Context:
    thread_id: str
    channel: str
    open: dict[str, GatedCall]
    seq: int = 0

    def fact(self, event: ev.Event, fact: Fact, **fields: Any) -> AuditFact:
        return AuditFact(at=event.at, thread_id=self.thread_id, seq=self.seq, event_id=event.id, fact=fact, **fields)


def channel_of(identity: str) -> str:
    """`slack` for `slack:U123`; identities are `<channel>:<who>`. "" for `system` and the like."""
    prefix, sep, _ = identity.partition(":")
    return prefix if sep else ""


def _freeze_override(event: ev.ToolCall, ctx: _Context) -> AuditFact | None:
    """A gated call made in a change freeze under `freeze = "override"`: its approval overrides the freeze."""
    if not event.freeze:
        return None
    until = event.freeze_until.isoformat() if event.freeze_until else ""
    detail = {"freeze": event.freeze, "freeze_until": until}
    fields = {"call_id": event.call_id, "tool": event.tool, "channel": ctx.channel, "source": event.actor}
    return ctx.fact(event, "freeze_override", **fields, detail=detail)


def _requested(event: ev.ApprovalRequested, ctx: _Context) -> AuditFact:
    gated = GatedCall(approval_id=event.approval_id, tool=event.tool, args_hash=event.args_hash, digest=event.digest)
    ctx.open[event.call_id] = gated
    detail: dict[str, Any] = {
        "args_hash": event.args_hash,
        "approvers": event.approvers,
        "requester": event.requester,
        "allow_self": event.allow_self,
        "expires_at": event.expires_at.isoformat(),
        "needed": event.needed,
    }
    if event.digest:
        detail["digest"] = event.digest
    return ctx.fact(
        event,
        "requested",
        approval_id=event.approval_id,
        call_id=event.call_id,
        tool=event.tool,
        who=event.requester,
        channel=ctx.channel,
        source=event.actor,
        detail=detail,
    )


def _previewed(event: ev.ToolPreviewed, ctx: _Context) -> AuditFact:
    """A gated call's preview, run before its card was posted: whether it worked, and a hash of what it
    said (the text itself is the thread's, like a tool's output)."""
    detail: dict[str, Any] = {"ok": event.ok, "duration_ms": event.duration_ms, "chars": len(event.output)}
    detail |= {"output_sha256": hashlib.sha256(event.output.encode()).hexdigest()}
    fields = {"call_id": event.call_id, "tool": event.tool, "who": event.actor, "channel": ctx.channel}
    return ctx.fact(event, "previewed", **fields, source=event.actor, detail=detail)


def _decision_fields(
    event: ev.ApprovalDecided | ev.ApprovalVoted | ev.ArgumentsEdited, who: str, ctx: _Context
) -> dict[str, Any]:
    """Who decided (or voted), on which channel (the event's, else the one the identity names), and
    through what: the trigger that brought the answer."""
    gated = ctx.open.get(event.call_id)
    return {
        "approval_id": event.approval_id,
        "call_id": event.call_id,
        "tool": gated.tool if gated else "",
        "who": who,
        "channel": event.channel or channel_of(who),
        "source": f"trigger:{event.trigger_id}" if event.trigger_id else "",
    }


def _decided(event: ev.ApprovalDecided, ctx: _Context) -> AuditFact:
    fields = _decision_fields(event, event.actor, ctx)
    gated = ctx.open.pop(event.call_id, None)
    if event.decision == "expire":
        return ctx.fact(event, "expired", **fields | {"who": "system", "channel": "", "source": "deadline"})
    detail: dict[str, Any] = {"comment": event.comment} if event.comment else {}
    if event.approved_by:
        detail["approved_by"] = event.approved_by
    if event.decision == "approve" and gated is not None:
        ctx.open[event.call_id] = gated.model_copy(update={"approved_by": event.actor})
    return ctx.fact(event, "approved" if event.decision == "approve" else "rejected", **fields, detail=detail)


def _edited(event: ev.ArgumentsEdited, ctx: _Context) -> AuditFact:
    """An approver changed the arguments before approving: the old request ends, a new one follows."""
    detail: dict[str, Any] = {"before": event.before, "after": event.after}
    detail |= {"digest_before": event.digest_before, "digest_after": event.digest_after}
    return ctx.fact(event, "edited", **_decision_fields(event, event.by, ctx), detail=detail)


def _voted(event: ev.ApprovalVoted, ctx: _Context) -> AuditFact:
    """One approval towards a quorum that is not complete yet."""
    detail = {"count": event.count, "needed": event.needed}
    return ctx.fact(event, "voted", **_decision_fields(event, event.by, ctx), detail=detail)


def _grant_given(event: ev.GrantGiven, ctx: _Context) -> AuditFact:
    """An approver gave the requester a standing grant with their approval."""
    detail = {"grant_id": event.grant_id, "requester": event.requester, "pattern": event.pattern}
    detail |= {"expires_at": event.expires_at.isoformat()}
    fields = {"approval_id": event.approval_id, "call_id": event.call_id, "tool": event.tool, "who": event.by}
    source = f"trigger:{event.trigger_id}" if event.trigger_id else ""
    return ctx.fact(
        event, "grant_given", **fields, channel=event.channel or channel_of(event.by), source=source, detail=detail
    )


def grant_revoked(grant: Grant) -> AuditFact:
    """A standing grant revoked (`bot grants revoke`, the API, the console): no thread event, so it is
    appended on its own (`AuditLog.append_fact`), filed under the thread the grant was given in."""
    assert grant.revoked_at is not None, "a revoked grant"
    detail = {"grant_id": grant.grant_id, "requester": grant.requester, "expires_at": grant.expires_at.isoformat()}
    return AuditFact(
        at=grant.revoked_at,
        thread_id=grant.thread_id,
        seq=0,  # of no thread event
        event_id=f"revoke:{grant.grant_id}",
        fact="grant_revoked",
        approval_id=grant.approval_id,
        tool=grant.tool,
        who=grant.revoked_by,
        channel=channel_of(grant.revoked_by),
        source=f"grant:{grant.grant_id}",
        detail=detail,
    )


def _grant_used(event: ev.GrantUsed, ctx: _Context) -> AuditFact:
    """A gated call ran under a standing grant, without a card: its start and result follow as for an approval."""
    ctx.open[event.call_id] = GatedCall(
        approval_id="", tool=event.tool, args_hash=event.args_hash, digest=event.digest, approved_by=event.granted_by
    )
    detail = {"grant_id": event.grant_id, "args_hash": event.args_hash, "digest": event.digest}
    return ctx.fact(
        event,
        "grant_used",
        call_id=event.call_id,
        tool=event.tool,
        who=event.granted_by,
        channel=ctx.channel,
        source=f"grant:{event.grant_id}",
        detail=detail,
    )


def _snoozed(event: ev.ApprovalSnoozed, ctx: _Context) -> AuditFact:
    """An approver's "not now": no decision; the request is asked again at `until`."""
    gated = ctx.open.get(event.call_id)
    return ctx.fact(
        event,
        "snoozed",
        approval_id=event.approval_id,
        call_id=event.call_id,
        tool=gated.tool if gated else "",
        who=event.by,
        channel=event.channel or channel_of(event.by),
        source=f"trigger:{event.trigger_id}" if event.trigger_id else "",
        detail={"until": event.until.isoformat()},
    )


def _started(event: ev.ToolStarted, ctx: _Context) -> AuditFact | None:
    gated = ctx.open.get(event.call_id)
    if gated is None or not gated.approved_by:
        return None  # an immediate call: no approval to account for
    return ctx.fact(
        event,
        "started",
        approval_id=gated.approval_id,
        call_id=event.call_id,
        tool=event.tool,
        who=gated.approved_by,
        channel=ctx.channel,
        source=event.actor,
        detail={"args_hash": gated.args_hash} | ({"digest": gated.digest} if gated.digest else {}),
    )


def _result(event: ev.ToolResult, ctx: _Context) -> AuditFact | None:
    gated = ctx.open.pop(event.call_id, None)
    if gated is None:
        return None
    detail = {"outcome": "ok", "duration_ms": event.duration_ms}
    return _ended(event, ctx, gated, detail)


def _error(event: ev.ToolErrorEvent, ctx: _Context) -> AuditFact | None:
    """A gated call that failed, was interrupted, or was refused at the last check (`rejected`)."""
    gated = ctx.open.pop(event.call_id, None)
    if gated is None or not gated.approved_by:
        return None  # an immediate call, or the rejection / expiry that is its own fact already
    outcome = {"failed": "failed", "interrupted": "interrupted"}.get(event.kind, "refused")
    detail: dict[str, Any] = {"outcome": outcome}
    if outcome == "refused":  # the refusal is our own sentence, never the tool's output
        detail["reason"] = event.error
    return _ended(event, ctx, gated, detail)


def _ended(
    event: ev.ToolResult | ev.ToolErrorEvent, ctx: _Context, gated: GatedCall, detail: dict[str, Any]
) -> AuditFact:
    return ctx.fact(
        event,
        "result",
        approval_id=gated.approval_id,
        call_id=event.call_id,
        tool=event.tool,
        who=event.actor,
        channel=ctx.channel,
        source=event.actor,
        detail=detail,
    )


# event type -> the fact it is, or None when this event is no fact (an immediate call's start, ...).
FACTS: Mapping[str, Callable[[Any, _Context], AuditFact | None]] = {
    "tool_call": _freeze_override,
    "approval_requested": _requested,
    "approval_voted": _voted,
    "approval_snoozed": _snoozed,
    "arguments_edited": _edited,
    "approval_decided": _decided,
    "tool_started": _started,
    "tool_result": _result,
    "tool_error": _error,
    "grant_given": _grant_given,
    "grant_used": _grant_used,
    "tool_previewed": _previewed,
}
# Facts in these events' own right, whatever the thread was doing (the rest are facts only for gated calls).
APPROVAL_EVENTS = frozenset({"approval_requested", "approval_voted", "arguments_edited", "approval_decided"})
APPROVAL_EVENTS |= {"grant_given", "grant_used"}  # standing grants (`core.runtime.grants`)
APPROVAL_EVENTS |= {"tool_previewed"}  # a gated call's preview (`core.runtime.previews`)
APPROVAL_EVENTS |= {"approval_snoozed"}  # an approver's "not now" (`core.runtime.snoozes`)


def derive(
    thread_id: str, channel: str, cursor: Cursor, events: Sequence[tuple[int, ev.Event]], upto: int | None = None
) -> tuple[Cursor, list[AuditFact]]:
    """The facts in `events` (seq, event) past `cursor`, and the cursor moved to `upto` (default: the last seq)."""
    ctx = _Context(thread_id=thread_id, channel=channel, open=dict(cursor.open))
    facts: list[AuditFact] = []
    last = cursor.seq
    for seq, event in events:
        if seq <= cursor.seq:
            continue
        ctx.seq, last = seq, seq
        mapper = FACTS.get(event.type)
        if mapper is not None and (found := mapper(event, ctx)) is not None:
            facts.append(found)
    return Cursor(seq=max(last, upto or 0), open=ctx.open), facts


def open_approved(cursor: Cursor) -> bool:
    """An approved call is running: its result may be among events not read yet."""
    return any(gated.approved_by for gated in cursor.open.values())


# --- the chain -----------------------------------------------------------------------------


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: every field but `hash`, as JSON with sorted keys and no spaces."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(prev: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + canonical(record)).hexdigest()


@dataclass(frozen=True)
class Head:
    """The chain's last record: its position and hash (0 and GENESIS for an empty chain)."""

    n: int = 0
    hash: str = GENESIS


def chain(facts: Sequence[AuditFact], head: Head) -> list[AuditRecord]:
    """`facts` as records at positions head.n+1..., each linked to the one before it."""
    records: list[AuditRecord] = []
    prev, n = head.hash, head.n
    for fact in facts:
        n += 1
        body = fact.model_dump(mode="json") | {"n": n, "prev": prev}
        prev = link(prev, body)
        records.append(AuditRecord.model_validate(body | {"hash": prev}))
    return records


@dataclass(frozen=True)
class Fault:
    """The first bad record: its position in what was read (1-based), its chain position, and what is wrong."""

    position: int
    n: int
    problem: Problem
    detail: str

    def __str__(self) -> str:
        return f"record {self.n} (position {self.position} of the stream): {self.problem}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    count: int
    fault: Fault | None = None

    @property
    def intact(self) -> bool:
        return self.fault is None


def verify(records: Sequence[Mapping[str, Any]], head: Head | None = None) -> Verification:
    """Check a whole chain, read in stream order; report the first changed, removed or reordered record.

    `head`: the chain head as stored beside the records, so a record removed from the end, or the last
    record rewritten, is found too.
    """
    numbers = [record.get("n") for record in records]
    prev, expected = GENESIS, 1
    for index, record in enumerate(records):
        position, n = index + 1, record.get("n")
        if not isinstance(n, int) or record.get("hash") != link(str(record.get("prev", "")), record):
            return Verification(
                len(records), Fault(position, n if isinstance(n, int) else expected, "changed", _why(n))
            )
        if n != expected:
            if n > expected and expected not in numbers[index + 1 :]:
                gap = f"record {expected}" if n == expected + 1 else f"records {expected}..{n - 1}"
                return Verification(len(records), Fault(position, expected, "removed", f"{gap} missing before it"))
            return Verification(
                len(records), Fault(position, n, "reordered", f"it comes where record {expected} belongs")
            )
        if record["prev"] != prev:
            if index == 0:
                return Verification(len(records), Fault(position, n, "changed", "the first record links to no genesis"))
            detail = f"its hash no longer matches the link in record {n + 1} (rewritten and re-hashed)"
            return Verification(len(records), Fault(position - 1, n - 1, "changed", detail))
        prev, expected = record["hash"], n + 1
    if head is not None and head.n >= expected:
        gap = f"record {expected}" if head.n == expected else f"records {expected}..{head.n}"
        fault = Fault(len(records) + 1, expected, "removed", f"{gap} missing at the end (the head is at {head.n})")
        return Verification(len(records), fault)
    if head is not None and records and head.hash != prev:
        detail = "its hash is not the chain head's (rewritten and re-hashed)"
        return Verification(len(records), Fault(len(records), expected - 1, "changed", detail))
    return Verification(len(records))


def _why(n: object) -> str:
    if not isinstance(n, int):
        return "it is not a record of this chain (no position)"
    return "its content does not match its hash"
