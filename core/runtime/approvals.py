"""Approvals: opening a request for a gated call, and deciding it exactly once.

Security rules, all enforced here in code: only an allowed approver may decide (checked before
the compare-and-set and again before the stored call runs); the call that runs is the one
stored with the approval, checked against its argument hash, never anything from the click.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.domain import events as ev
from core.domain import quorum
from core.domain.durations import words
from core.domain.errors import ApprovalError, InvalidToolCall
from core.domain.events import SHORT_DIGEST
from core.domain.grants import fits
from core.domain.ids import new_approval_id, new_id
from core.domain.people import when, who
from core.domain.ports import Clock
from core.obs import failpoints
from core.redis.store import ApprovalRecord, Store
from core.runtime.previews import Previews
from core.runtime.run import Run
from core.tools.edits import edited, split_edits
from core.tools.registry import ToolRegistry, ToolSpec, args_hash

REQUESTED_FIELDS = {
    *("approval_id", "call_id", "tool", "args", "args_hash", "approvers", "requester", "allow_self"),
    *("digest", "needed"),
}
ANY = "*"  # a quorum's slot any of its approvers fills
OVERRIDE = "freeze override"  # the slot the policy's `freeze_override` fills, when a call overrides a freeze
VOTE_ATTEMPTS = 20  # approvers answering at the very same moment: each reads the votes again and retries


class Approvals:
    def __init__(
        self, store: Store, tools: ToolRegistry, clock: Clock, console_url: str = "", previews: Previews | None = None
    ) -> None:
        self.store = store
        self.tools = tools
        self.clock = clock
        self.console_url = console_url.rstrip("/")  # BOT_PUBLIC_URL: cards link to the thread in the console
        self.previews = previews  # tools' plans before apply, run for their cards

    async def open(self, run: Run, call: ev.ToolCall, spec: ToolSpec) -> None:
        """Store the approval record, then record the call and the request in the thread; the thread waits.

        A tool with a preview runs it first (under the thread's lease, bounded by its timeout): the card
        shows it, and the thread records it with the request."""
        preview = await self.previews.run(run, call.call_id, call.args, spec) if self.previews is not None else None
        now, policy = self.clock.now(), spec.policy(call.args)
        override = policy.freeze_override if call.freeze else []  # the call overrides a change freeze
        reason = stated_reason(call, run.state.last_user_text)
        if call.freeze:
            until = f" until {when(call.freeze_until)}" if call.freeze_until else ""
            reason = f"overrides the change freeze {call.freeze}{until}; {reason}"
        record = ApprovalRecord(
            approval_id=new_approval_id(),
            thread_id=run.state.thread_id,
            call_id=call.call_id,
            tool=spec.name,
            args=call.args,
            args_hash=args_hash(spec.name, call.args),
            # The record is stored apart from the thread's events, which are redacted as they are
            # committed: the request text comes from them already; the model's words do not yet.
            reason=run.redactor.text(reason),
            requester=run.state.last_actor or run.state.requester,
            approvers=[*policy.deciders, *(e for e in override if e not in policy.deciders)],
            allow_self=policy.allow_self,
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
            needed=policy.needed + (1 if call.freeze else 0),
            from_groups=policy.from_groups,
            freeze=call.freeze,
            freeze_until=call.freeze_until,
            freeze_override=override,
            digest=digest(spec.name, call.args, run.state.thread_id),
            wait_until=now + timedelta(seconds=policy.wait) if policy.wait else None,
            valid_for=policy.valid_for,
            agent=run.state.agent,
        )
        if preview is not None:
            record = record.model_copy(update=preview.on_record(record.args_hash))
        run.outbox += self.cards(run, record)
        # The record first: a crash before the commit leaves an approval no thread waits for, which
        # expires unseen (its card was never stored); the other order could show a card with no record.
        await self.store.create_approval(record)
        fields = record.model_dump(include=REQUESTED_FIELDS)
        previewed = [preview.event(run)] if preview is not None else []
        await run.commit(call, *previewed, ev.ApprovalRequested(**run.meta(), **fields, expires_at=record.expires_at))

    def cards(self, run: Run, record: ApprovalRecord) -> list[ev.ApprovalRequest]:
        """The request's card for the thread's channel and each channel the policy notifies; sent again
        with each approval towards a quorum, so channels update the card they show; a snooze still
        running stays marked on it (a vote or an escalation during a snooze does not wake it)."""
        counted = self.counted(record)
        snoozed = record.snoozed_until is not None and record.snoozed_until > self.clock.now()
        request = run.out(
            ev.ApprovalRequest,
            approval_id=record.approval_id,
            tool=record.tool,
            args=record.args,
            reason=record.reason,
            requester=record.requester,
            approvers=self.tools.shown_approvers(record.approvers, record.requester, record.allow_self),
            expires_at=record.expires_at,
            thread_url=f"{self.console_url}/#thread/{record.thread_id}" if self.console_url else "",
            digest=record.digest,
            needed=record.needed,
            approved_by=[vote.by for vote in counted],
            open_groups=self.open_groups(record),
            wait_until=record.wait_until,
            snoozed_until=record.snoozed_until if snoozed else None,
            snoozed_by=record.snoozed_by if snoozed else "",
            grant_max=longest_grant(self.tools, record),
            **record.card_preview,
        )
        copies = [request.model_copy(update={"id": new_id(), "channel": channel}) for channel in record.notify]
        return [request, *(copy for copy in copies if copy.channel != request.channel)]

    # --- quorum ------------------------------------------------------------------------------

    def slots(self, record: ApprovalRecord) -> list[str]:
        """What the quorum needs, a slot an approver each: any approver (`ANY`) or a named group's, and
        the freeze override's when the call overrides a change freeze."""
        override = [OVERRIDE] if record.freeze else []
        return [*(record.from_groups or [ANY] * (record.needed - len(override))), *override]

    def counted(self, record: ApprovalRecord) -> list[quorum.Vote]:
        """The record's approvals that count now: still valid, each filling a slot of the quorum."""
        votes = quorum.fresh(record.votes, self.clock.now(), record.valid_for)
        filling = quorum.assigned(votes, self.slots(record), self._member(record))
        return [vote for vote in votes if vote.by in filling]

    def complete(self, record: ApprovalRecord) -> bool:
        return len(self.counted(record)) >= record.needed

    def open_groups(self, record: ApprovalRecord) -> list[str]:
        """The named slots still open: groups of `from_groups`, and the freeze override."""
        still = quorum.open_slots(self.counted(record), self.slots(record), self._member(record))
        return [slot for slot in still if slot != ANY]

    def overridden_by(self, record: ApprovalRecord) -> str:
        """Who filled the freeze override's slot ("" when the call overrides no freeze)."""
        if not record.freeze:
            return ""
        filling = quorum.assigned(self.counted(record), self.slots(record), self._member(record))
        override = len(self.slots(record)) - 1
        return next((voter for voter, slot in filling.items() if slot == override), "")

    def progress(self, record: ApprovalRecord) -> str:
        """`1 of 2 approvals (<who:…>); waiting for one more`, for the people who approved and the thread."""
        counted = self.counted(record)
        names = ", ".join(who(vote.by) for vote in counted)
        text = f"{len(counted)} of {record.needed} approvals for {record.tool} ({names})"
        if groups := self.open_groups(record):
            named = [
                f"the freeze override ({self.tools.describe(record.freeze_override)})"
                if group == OVERRIDE
                else f"the {group} group"
                for group in groups
            ]
            return f"{text}; still needs an approver from {', '.join(named)}"
        left = record.needed - len(counted)
        return f"{text}; waiting for {left} more" if left > 0 else text

    async def vote(self, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> ApprovalRecord:
        """Count the sender's approval towards the record's quorum; returns the record with its votes.

        Already counted (a redelivery, or a vote the API stored first) returns the record unchanged.
        Raises ApprovalError when the approval cannot count: the quorum is complete already, or the
        sender fills none of the groups still open, or the request ended meanwhile."""
        for _ in range(VOTE_ATTEMPTS):
            now = self.clock.now()
            votes = quorum.fresh(record.votes, now, record.valid_for)
            current = record.model_copy(update={"votes": votes})
            if any(vote.by == trigger.sender for vote in votes):
                return current
            if self.complete(current):
                raise ApprovalError(f"approval {record.approval_id} has its approvals already; nothing changed")
            if not quorum.adds(self.counted(current), trigger.sender, self.slots(record), self._member(record)):
                raise ApprovalError(f"{who(trigger.sender)} fills no group still open: {self.progress(current)}")
            voted = quorum.Vote(by=trigger.sender, at=now, channel=trigger.channel, digest=record.digest)
            outcome = await self.store.vote(record, [*votes, voted], now)
            if outcome == "ok":
                return record.model_copy(update={"votes": [*votes, voted]})
            found = await self.store.get_approval(record.approval_id)
            if found is None:
                raise ApprovalError(unknown(record.approval_id))
            if outcome in ("late", "expired"):
                raise ApprovalError(self.expired(record))
            if outcome != "changed":
                raise ApprovalError(already_decided(found))
            record = found  # another approver's vote came first: count again
        raise ApprovalError(
            f"too many approvers answered approval {record.approval_id} at once; nothing changed, answer again"
        )

    def _member(self, record: ApprovalRecord) -> quorum.Member:
        """Who may fill which slot of `record`'s quorum."""
        anyone = [entry for entry in record.allowed if entry not in record.freeze_override]

        def member(identity: str, slot: str) -> bool:
            if slot == ANY:
                return self.tools.is_member(identity, anyone)
            if slot == OVERRIDE:
                return self.tools.is_member(identity, record.freeze_override)
            return identity in self.tools.groups.get(slot, [])

        return member

    # --- edits ------------------------------------------------------------------------------

    def edit_of(self, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> tuple[dict[str, Any], str] | None:
        """The arguments an approval with edits asks to run, and the comment left without them; None when
        it edits nothing. Raises ApprovalError when the edited call does not fit the tool's schema."""
        if trigger.decision != "approve" or record.tool not in self.tools:
            return None
        spec = self.tools.get(record.tool)
        try:
            changes, comment = split_edits(spec, trigger.comment)
            after = edited(record.args, {**changes, **(trigger.args or {})})
            if after == record.args:
                return None
            self.tools.validate(record.tool, after)
        except InvalidToolCall as exc:
            raise ApprovalError(
                f"your edit does not fit {record.tool}'s parameters ({exc}); nothing changed: approval "
                f"{record.approval_id} still waits, for the arguments on its card"
            ) from None
        return after, comment

    def edited(self, record: ApprovalRecord, after: dict[str, Any], trigger: ev.DecisionTrigger) -> ApprovalRecord:
        """The request for the edited call: under the policy that governs its arguments now (an edit can
        move it into a stricter one), with the old request's deadlines, and the editor's approval counted
        where that policy lets them approve. Not stored."""
        spec, now = self.tools.get(record.tool), self.clock.now()
        policy = spec.policy(after)
        override = policy.freeze_override if record.freeze else []
        approvers = [*policy.deciders, *(e for e in override if e not in policy.deciders)]
        gated = policy.applies(after)  # an edit out of every gated policy needs the editor's approval only
        waits = record.created_at + timedelta(seconds=policy.wait) if policy.wait else None
        new = record.model_copy(
            update={
                "approval_id": new_approval_id(),
                "args": after,
                "args_hash": args_hash(record.tool, after),
                "approvers": approvers if gated else list(record.allowed),
                "allow_self": policy.allow_self if gated else record.allow_self,
                "needed": policy.needed + (1 if record.freeze else 0) if gated else 1,
                "from_groups": policy.from_groups if gated else [],
                "freeze_override": override,
                "notify": policy.notify if gated else record.notify,
                "escalate_to": policy.escalate_to if gated else record.escalate_to,
                "digest": digest(record.tool, after, record.thread_id),
                "wait_until": max(filter(None, (record.wait_until, waits)), default=None),
                "valid_for": policy.valid_for if gated else record.valid_for,
                "edited_from": record.approval_id,
                "votes": [],
            }
        )
        if self.tools.may_approve(trigger.sender, new.allowed, new.requester, new.allow_self) and not (
            new.wait_until is not None and now < new.wait_until
        ):
            vote = quorum.Vote(by=trigger.sender, at=now, channel=trigger.channel, digest=new.digest)
            if quorum.adds([], trigger.sender, self.slots(new), self._member(new)):
                new = new.model_copy(update={"votes": [vote]})
        return new

    # --- deciding ----------------------------------------------------------------------------

    async def decide(self, trigger: ev.DecisionTrigger) -> ApprovalRecord:
        """Check the decider's permission, then compare-and-set; return the decided record or raise ApprovalError.

        An approval towards a quorum that it does not complete returns the record still pending, with its vote."""
        record = await self.store.get_approval(trigger.approval_id)
        if record is None:
            raise ApprovalError(unknown(trigger.approval_id))
        if refusal := self.refusal_to_decide(trigger, record):
            raise ApprovalError(refusal)
        if trigger.decision == "approve" and record.status == "pending" and record.needed > 1:
            record = await self.vote(trigger, record)
            if not self.complete(record):
                return record
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
        """Why `trigger.sender` may not decide `record` (now, with this answer), or None."""
        if not self.tools.may_approve(trigger.sender, record.allowed, record.requester, record.allow_self):
            if trigger.sender == record.requester and self.tools.is_member(trigger.sender, record.allowed):
                why = "you requested it, and this tool needs an approver other than the requester"
            else:
                why = "you are not one of its allowed approvers"
            return (
                f"{who(trigger.sender)} may not decide approval {record.approval_id}: {why}; "
                f"allowed approvers: {self.tools.describe(record.allowed)}. Nothing changed."
            )
        answered = trigger.digest.strip().lower()
        if answered and record.digest and not record.digest.startswith(answered):
            return (
                f"your answer was for another version of this call (digest {answered[:SHORT_DIGEST]}); approval "
                f"{record.approval_id} covers {record.tool} with digest {record.digest[:SHORT_DIGEST]}. Check the "
                "arguments on its card and answer again. Nothing changed."
            )
        now = self.clock.now()
        if trigger.decision == "approve" and record.wait_until is not None and now < record.wait_until:
            return (
                f"approval {record.approval_id} can be given from {when(record.wait_until)} (its policy waits "
                f"{words(int((record.wait_until - record.created_at).total_seconds()))} after the request); "
                "a rejection is possible now. Nothing changed."
            )
        return None

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
        if lapsed := self.lapsed(record):
            return lapsed
        spec = self.tools.get(record.tool)
        # Permission again, at execution time, against the configuration now in force.
        policy = spec.policy(record.args)
        if record.edited_from and not policy.applies(record.args):
            return None  # edited out of every gated policy: its editor's approval was more than it needs
        approvers = [*policy.deciders, *(policy.escalate_to if record.escalated else [])]
        approvers += policy.freeze_override if record.freeze else []
        deciders = [vote.by for vote in record.votes] if record.needed > 1 else [record.decided_by]
        for decider in deciders:
            if not self.tools.may_approve(decider, approvers, record.requester, policy.allow_self):
                return f"{who(decider)} is no longer an allowed approver for {record.tool}; the call did not run"
        return None

    def lapsed(self, record: ApprovalRecord) -> str | None:
        """Why an approval given too long ago no longer holds (`valid_for`: a thread paused meanwhile), or None."""
        if record.valid_for is None or not record.decided_at:
            return None
        decided = datetime.fromisoformat(record.decided_at)
        if self.clock.now() - decided < timedelta(seconds=record.valid_for):
            return None
        return (
            f"approval {record.approval_id} was given at {when(decided)} but lapsed before the call could run "
            f"(it is valid for {words(record.valid_for)}), so it did not run; ask for it again"
        )


def digest(tool: str, args: Mapping[str, Any], thread_id: str) -> str:
    """What an approval covers: one canonical hash of the tool, its arguments and the thread asking."""
    canonical = json.dumps({"tool": tool, "args": args, "thread": thread_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def stated_reason(call: ev.ToolCall, asked: str) -> str:
    """Why the call is made, for the card: the model's own words, else the request that asked for it."""
    reason = call.reason.strip() or str(call.args.get("reason") or "").strip()
    if reason:
        return reason
    asked = " ".join(asked.split())
    return f"asked: {asked[:300]}" if asked else ""


async def thread_of(store: Store, trigger: ev.DecisionTrigger | ev.SnoozeTrigger) -> str | None:
    """The thread an answer to an approval is for: the one it names, else the approval's (None: no such approval)."""
    if trigger.thread_id:
        return trigger.thread_id
    found = await store.get_approval(trigger.approval_id)
    return found.thread_id if found is not None else None


def longest_grant(tools: ToolRegistry, record: ApprovalRecord) -> int:
    """The longest standing grant (seconds) an approval of `record` may give, for its card; 0: none.
    `Grants.refusal_to_grant` says why not, and is what decides."""
    if record.tool not in tools or record.needed > 1:
        return 0
    policy = tools.get(record.tool).policy(record.args)
    terms = policy.grants
    if terms is None or not policy.applies(record.args) or not fits(terms.when, record.args):
        return 0
    return terms.max_for


def unknown(approval_id: str) -> str:
    return f"there is no approval {approval_id!r}; check the id in the approval request"


def already_decided(record: ApprovalRecord) -> str:
    by = f" by {who(record.decided_by)}" if record.decided_by else ""
    at = f" at {when(datetime.fromisoformat(record.decided_at))}" if record.decided_at else ""
    return f"approval {record.approval_id} was already {record.status}{by}{at}; nothing changed"
