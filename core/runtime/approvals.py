"""Approvals: opening a request for a gated call, and deciding it exactly once.

Security rules, all enforced here in code: only an allowed approver may decide (checked before
the compare-and-set and again before the stored call runs); the call that runs is the one
stored with the approval, checked against its argument hash, never anything from the click.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.domain import events as ev
from core.domain.errors import ApprovalError
from core.domain.ids import new_approval_id, new_id
from core.domain.people import when, who
from core.domain.ports import Clock
from core.obs import failpoints
from core.redis.store import ApprovalRecord, Store
from core.runtime.run import Run
from core.tools.registry import ToolRegistry, ToolSpec, args_hash

REQUESTED_FIELDS = {"approval_id", "call_id", "tool", "args", "args_hash", "approvers", "requester", "allow_self"}


class Approvals:
    def __init__(self, store: Store, tools: ToolRegistry, clock: Clock, console_url: str = "") -> None:
        self.store = store
        self.tools = tools
        self.clock = clock
        self.console_url = console_url.rstrip("/")  # BOT_PUBLIC_URL: cards link to the thread in the console

    async def open(self, run: Run, call: ev.ToolCall, spec: ToolSpec) -> None:
        """Store the approval record, then record the call and the request in the thread; the thread waits."""
        now, policy = self.clock.now(), spec.approval
        record = ApprovalRecord(
            approval_id=new_approval_id(),
            thread_id=run.state.thread_id,
            call_id=call.call_id,
            tool=spec.name,
            args=call.args,
            args_hash=args_hash(spec.name, call.args),
            # The record is stored apart from the thread's events, which are redacted as they are
            # committed: the request text comes from them already; the model's words do not yet.
            reason=run.redactor.text(stated_reason(call, run.state.last_user_text)),
            requester=run.state.last_actor or run.state.requester,
            approvers=spec.approval.approvers,
            allow_self=spec.approval.allow_self,
            channel=run.state.channel,
            conversation=run.state.conversation,
            reply_to=run.state.reply_to,
            created_at=now,
            expires_at=now + timedelta(seconds=policy.expires_in),
            remind_at=now + timedelta(seconds=policy.expires_in - policy.remind_before)
            if policy.remind_before
            else None,
            escalate_at=now + timedelta(seconds=policy.escalate_after) if policy.escalate_after else None,
            escalate_to=policy.escalate_to,
            notify=policy.notify,
        )
        request = run.out(
            ev.ApprovalRequest,
            approval_id=record.approval_id,
            tool=spec.name,
            args=call.args,
            reason=record.reason,
            requester=record.requester,
            approvers=self.tools.shown_approvers(record.approvers, record.requester, record.allow_self),
            expires_at=record.expires_at,
            thread_url=f"{self.console_url}/#thread/{run.state.thread_id}" if self.console_url else "",
        )
        run.outbox.append(request)
        for channel in spec.approval.notify:
            if channel != request.channel:  # the policy asks for the request there too, e.g. by email
                run.outbox.append(request.model_copy(update={"id": new_id(), "channel": channel}))
        # The record first: a crash before the commit leaves an approval no thread waits for, which
        # expires unseen (its card was never stored); the other order could show a card with no record.
        await self.store.create_approval(record)
        fields = record.model_dump(include=REQUESTED_FIELDS)
        await run.commit(call, ev.ApprovalRequested(**run.meta(), **fields, expires_at=record.expires_at))

    async def decide(self, trigger: ev.DecisionTrigger) -> ApprovalRecord:
        """Check the decider's permission, then compare-and-set; return the decided record or raise ApprovalError."""
        record = await self.store.get_approval(trigger.approval_id)
        if record is None:
            raise ApprovalError(unknown(trigger.approval_id))
        if refusal := self.refusal_to_decide(trigger, record):
            raise ApprovalError(refusal)
        outcome = await self.store.decide(
            record.approval_id, trigger.decision == "approve", trigger.sender, trigger.comment, self.clock.now()
        )
        if outcome.outcome in ("expired", "late"):
            raise ApprovalError(self.expired(record))
        if outcome.outcome == "missing":
            raise ApprovalError(unknown(trigger.approval_id))
        if outcome.outcome == "ok":  # this trigger won: the record is what it read plus what it wrote
            await failpoints.hit("after-decision")
            status = "approved" if trigger.decision == "approve" else "rejected"
            fields = {"decided_by": outcome.decided_by, "decided_at": outcome.decided_at, "comment": trigger.comment}
            return record.model_copy(update={"status": status, **fields})
        decided = await self.store.get_approval(record.approval_id)
        assert decided is not None, "an approval record never disappears once decided"
        if outcome.decided_by == trigger.sender and await self._still_awaited(decided):
            # This trigger won before its worker crashed (a redelivery): apply it now.
            return decided
        raise ApprovalError(already_decided(decided))

    def refusal_to_decide(self, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> str | None:
        """Why `trigger.sender` may not decide `record`, or None."""
        if self.tools.may_approve(trigger.sender, record.allowed, record.requester, record.allow_self):
            return None
        if trigger.sender == record.requester and self.tools.is_member(trigger.sender, record.allowed):
            why = "you requested it, and this tool needs an approver other than the requester"
        else:
            why = "you are not one of its allowed approvers"
        return (
            f"{who(trigger.sender)} may not decide approval {record.approval_id}: {why}; "
            f"allowed approvers: {self.tools.describe(record.allowed)}. Nothing changed."
        )

    def expired(self, record: ApprovalRecord) -> str:
        return f"approval {record.approval_id} expired at {when(record.expires_at)}; ask for the action again"

    async def _still_awaited(self, record: ApprovalRecord) -> bool:
        pending = (await self.store.load_state(record.thread_id)).pending_approval
        return pending is not None and pending.approval_id == record.approval_id

    def refusal_to_run(self, run: Run, record: ApprovalRecord) -> str | None:
        """Why the approved call must not run after all, or None. Checked under the thread's lock."""
        pending = run.state.pending_approval
        if record.args_hash != args_hash(record.tool, record.args) or (
            pending is not None and pending.args_hash != record.args_hash
        ):
            return "the approval record does not match the call that was requested; it did not run"
        if record.tool not in self.tools:  # the configuration changed, or its MCP server no longer lists it
            return f"{record.tool} is no longer one of the bot's tools, so the approved call did not run"
        spec = self.tools.get(record.tool)
        # Permission again, at execution time, against the configuration now in force.
        approvers = [*spec.approval.approvers, *(spec.approval.escalate_to if record.escalated else [])]
        if not self.tools.may_approve(record.decided_by, approvers, record.requester, spec.approval.allow_self):
            return f"{who(record.decided_by)} is no longer an allowed approver for {record.tool}; the call did not run"
        return None


def stated_reason(call: ev.ToolCall, asked: str) -> str:
    """Why the call is made, for the card: the model's own words, else the request that asked for it."""
    reason = call.reason.strip() or str(call.args.get("reason") or "").strip()
    if reason:
        return reason
    asked = " ".join(asked.split())
    return f"asked: {asked[:300]}" if asked else ""


def unknown(approval_id: str) -> str:
    return f"there is no approval {approval_id!r}; check the id in the approval request"


def already_decided(record: ApprovalRecord) -> str:
    by = f" by {who(record.decided_by)}" if record.decided_by else ""
    at = f" at {when(datetime.fromisoformat(record.decided_at))}" if record.decided_at else ""
    return f"approval {record.approval_id} was already {record.status}{by}{at}; nothing changed"
