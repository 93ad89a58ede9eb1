"""Text views of threads and approvals for the command line."""

from __future__ import annotations

import json

from core.domain import events as ev
from core.domain.reducer import ThreadState
from core.redis.store import ApprovalRecord


def event_line(seq: int, event: ev.Event) -> str:  # noqa: C901 - one flat case per event type
    match event:
        case ev.ThreadStarted():
            what = f"started by {event.requester} on {event.channel} ({event.conversation}), agent {event.agent}"
        case ev.UserMessage() | ev.HumanAnswer() | ev.AgentReply():
            what = event.text
        case ev.ModelCall():
            what = (
                f"{event.model} prompt {event.prompt_name}@{event.prompt_hash[:12]} "
                f"in={event.input_tokens} out={event.output_tokens} cached={event.cache_read_tokens} "
                f"{event.latency_ms:.0f}ms"
            )
        case ev.ToolCall():
            what = f"{event.tool} {json.dumps(event.args, sort_keys=True)} [{event.call_id}]"
        case ev.ToolStarted():
            what = f"{event.tool} [{event.call_id}]"
        case ev.ToolResult():
            what = f"{event.tool}: {event.output}"
        case ev.ToolErrorEvent():
            what = f"{event.tool or '-'} {event.kind}: {event.error}"
        case ev.ToolPreviewed():
            what = f"{event.tool} preview {'ok' if event.ok else 'failed'}: {event.output}"
        case ev.ApprovalRequested():
            what = f"{event.approval_id} for {event.tool} {json.dumps(event.args, sort_keys=True)}; approvers {event.approvers}"
        case ev.ApprovalDecided():
            what = f"{event.approval_id} {event.decision}" + (f": {event.comment}" if event.comment else "")
        case ev.HumanQuestion():
            what = event.question
        case ev.Paused():
            what = event.reason or "-"
        case ev.Resumed():
            what = "-"
        case ev.Escalated():
            what = event.reason
        case ev.Failed():
            what = event.error
        case ev.HandedOff():
            what = f"{event.from_agent} -> {event.to_agent}" + (f": {event.note}" if event.note else "")
        case ev.DeliveryFailed():
            what = f"could not deliver {event.outbound_kind} {event.outbound_id} to {event.channel}: {event.error}"
    first, *rest = what.splitlines() or [""]
    more = f" (+{len(rest)} lines)" if rest else ""
    return f"{seq:>5}  {event.at:%Y-%m-%d %H:%M:%S}  {event.type:<18} {event.actor:<20} {first}{more}"


def thread_line(state: ThreadState) -> str:
    when = f"{state.updated_at:%Y-%m-%d %H:%M}" if state.updated_at else "-"
    pending = f" approval {state.pending_approval.approval_id}" if state.pending_approval else ""
    undelivered = f" UNDELIVERED={state.undelivered}" if state.undelivered else ""
    return (
        f"{state.thread_id}  {state.effective_status:<17} {state.channel:<8} {state.requester:<22} "
        f"events={state.seq:<5} steps={state.steps:<4} {when}{pending}{undelivered}"
    )


def state_summary(state: ThreadState) -> str:
    return json.dumps(state.model_dump(mode="json", exclude={"recent_triggers"}), indent=2)


def approval_line(record: ApprovalRecord) -> str:
    args = json.dumps(record.args, sort_keys=True)
    return (
        f"{record.approval_id}  {record.tool} {args}  requested by {record.requester}  "
        f"approvers {', '.join(record.approvers)}  thread {record.thread_id}  "
        f"expires {record.expires_at:%Y-%m-%d %H:%M} UTC"
    )
