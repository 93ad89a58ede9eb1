"""The operations behind the HTTP routes: check now, then enqueue a trigger for a worker.

Why the inbox and not the agent directly: an HTTP request must stay short, and resuming a
thread or approving a deploy runs tools (minutes, under the thread's lease); workers do that
for every channel alike, and any number of API processes can share one Redis.

The core reports refusals later, as notices; an API caller needs the answer now. So each
operation first checks what the core would check, with the core's own state and functions,
and refuses with an `ApiError` before anything is enqueued. Deciding an approval goes
further: the API runs the core's compare-and-set itself (`Approvals.decide`), so of two
approvers deciding at once exactly one gets 202; the worker then applies the decision it
finds recorded for that decider (the core's redelivery path). If Redis fails between the two,
the decision stands: every worker's sweeper re-drives decided-but-unapplied approvals, so the
answer is still 202. Launching claims `launch:<thread id>` with the trigger, in one script, so
of two launches for one conversation exactly one gets 202. Everything else can race with a
trigger still in the inbox; then the core refuses it later, as a notice, and nothing changes.
"""

from __future__ import annotations

import logging
from typing import Literal

from bot.http.access import Access
from bot.http.errors import ApiError
from bot.http.schemas import Accepted, ApprovalView
from bot.main import Wiring
from core.domain import events as ev
from core.domain import people
from core.domain.errors import ApprovalError, StoreUnavailable
from core.domain.events import SHORT_DIGEST
from core.domain.ids import new_id
from core.domain.reducer import ThreadState
from core.model.commands import parse_decision
from core.redis.limits import RateLimits
from core.redis.store import ApprovalRecord
from core.runtime.approvals import digest
from core.runtime.grants import check_grant

log = logging.getLogger(__name__)
API_CHANNEL = "api"


def thread_not_found(thread_id: str) -> ApiError:
    return ApiError(404, "thread_not_found", f"there is no thread {thread_id!r}; list threads with GET /v1/threads")


def thread_exists(trigger: ev.MessageTrigger) -> ApiError:
    return ApiError(
        409,
        "thread_exists",
        f"thread {trigger.thread_id} already exists for conversation {trigger.conversation!r} (or its launch "
        f"is queued); nothing was enqueued. Send input with POST /v1/threads/{trigger.thread_id}/events",
    )


def api_text(text: str) -> str:
    """Core's text for API clients: people as their exact identities (a program may act on them)."""
    return people.render(text, str, people.plain_time)


class Operations:
    def __init__(self, wiring: Wiring, limits: RateLimits | None = None) -> None:
        self.wiring = wiring
        self.limits = limits
        self.access = Access(wiring.tools, wiring.settings.cli_identity)

    # --- threads ----------------------------------------------------------------------------

    async def thread(self, thread_id: str, identity: str | None = None) -> ThreadState:
        """The thread's state; with `identity`, only if that identity may read it (else 403)."""
        state = await self.wiring.store.load_state(thread_id)
        if state.seq == 0:
            raise thread_not_found(thread_id)
        if identity is not None:
            self.access.check_read(identity, state)
        return state

    async def launch(self, trigger: ev.MessageTrigger, *, new_thread: bool = True, fresh: bool = False) -> Accepted:
        """Start a thread; the trigger carries its thread id. `new_thread`: refuse one that exists.
        `fresh`: its conversation id was made just now, so no thread can have it yet (one read less)."""
        self._no_decision(trigger.text)
        if trigger.agent and trigger.agent not in self.wiring.threads.roster:
            agents = ", ".join(self.wiring.threads.roster.names())
            raise ApiError(422, "unknown_agent", f"there is no agent {trigger.agent!r}; the agents are {agents}")
        if not new_thread:
            return await self._publish(trigger)  # a webhook: its channel is the operator's configuration
        self.access.check_speak(trigger.sender, trigger.channel)
        if self.limits is not None and (refused := await self.limits.hit("launch", trigger.sender)):
            raise ApiError(429, "rate_limited", refused.message, {"Retry-After": str(refused.retry_after)})
        if not fresh and (await self.wiring.store.load_state(trigger.thread_id)).seq:
            raise thread_exists(trigger)
        # The claim and the trigger go in together, so of concurrent launches one wins. The claim lasts as
        # long as dedup keys do (core/redis/keys.py DEDUP_TTL_SECONDS); by then the thread exists, checked above.
        claimed = await self._publish(trigger.model_copy(update={"dedup_key": f"launch:{trigger.thread_id}"}))
        if claimed.duplicate:
            raise thread_exists(trigger)
        return claimed

    async def send_input(self, thread_id: str, sender: str, text: str) -> Accepted:
        self._no_decision(text)
        state = await self.thread(thread_id)
        self.access.check_write(sender, state)
        trigger = ev.MessageTrigger(
            id=new_id(),
            channel=API_CHANNEL,
            conversation=state.conversation,
            sender=sender,
            thread_id=thread_id,
            text=text,
        )
        return await self._publish(trigger)

    async def control(
        self, thread_id: str, sender: str, action: Literal["pause", "resume"], reason: str = ""
    ) -> Accepted:
        state = await self.thread(thread_id)
        self.access.check_write(sender, state)
        if action == "pause" and state.paused:
            raise ApiError(
                409,
                "already_paused",
                f"thread {thread_id} is already paused; nothing changed. "
                f"Resume it with POST /v1/threads/{thread_id}/resume",
            )
        if action == "resume" and not state.paused:
            raise ApiError(
                409,
                "not_paused",
                f"thread {thread_id} is not paused; nothing changed. Pause it with POST /v1/threads/{thread_id}/pause",
            )
        trigger = ev.ControlTrigger(
            id=new_id(),
            channel=API_CHANNEL,
            conversation=state.conversation,
            sender=sender,
            thread_id=thread_id,
            action=action,
            reason=reason,
        )
        return await self._publish(trigger)

    async def message(self, trigger: ev.MessageTrigger) -> Accepted:
        """A chat message from a channel (the web console): the core handles it like any channel's."""
        return await self._publish(trigger)

    # --- approvals --------------------------------------------------------------------------

    async def approval(self, approval_id: str) -> ApprovalRecord:
        record = await self.wiring.store.get_approval(approval_id)
        if record is None:
            raise ApiError(
                404,
                "approval_not_found",
                f"there is no approval {approval_id!r}; list pending ones with GET /v1/approvals?status=pending",
            )
        return record

    def view(self, record: ApprovalRecord, identity: str) -> ApprovalView:
        tools, now = self.wiring.tools, self.wiring.threads.clock.now()
        snoozed = record.status == "pending" and record.snoozed_until is not None and record.snoozed_until > now
        return ApprovalView(
            **record.model_dump(),
            snoozed=snoozed,
            expired=record.expires_at <= now,
            may_decide=tools.may_approve(identity, record.approvers, record.requester, record.allow_self),
            approvers_described=api_text(tools.describe(record.approvers)),
        )

    async def decide(self, trigger: ev.DecisionTrigger) -> Accepted:
        """Permission check and compare-and-set now (the core's own), then the worker applies it."""
        record = await self.approval(trigger.approval_id)
        allowed = self.wiring.tools.may_approve(trigger.sender, record.approvers, record.requester, record.allow_self)
        try:
            if allowed and record.status == "pending":  # a standing grant asked for with it: refused before the CAS
                check_grant(self.wiring.grants, trigger, record)
        except ApprovalError as exc:
            raise ApiError(409, "grant_refused", api_text(str(exc))) from exc
        if allowed and record.status == "pending" and (edit := self._edit_of(trigger, record)) is not None:
            return await self._edit(trigger, record, edit)
        try:
            decided = await self.wiring.threads.approvals.decide(trigger)
        except ApprovalError as exc:
            if not allowed:
                raise ApiError(403, "not_an_approver", api_text(str(exc))) from exc
            current = await self.approval(trigger.approval_id)
            lapsed = current.status == "expired" or (
                current.status == "pending" and current.expires_at <= self.wiring.threads.clock.now()
            )  # past its deadline, before a sweeper marked it
            code = (
                "approval_expired"
                if lapsed
                else "approval_decided"
                if current.status != "pending"
                else "approval_refused"
            )
            raise ApiError(409, code, api_text(str(exc))) from exc
        wanted = "approved" if trigger.decision == "approve" else "rejected"
        counted = decided.status == "pending" and wanted == "approved"  # one approval of a quorum: it waits for more
        if decided.status != wanted and not counted:  # the same person decided the other way a moment ago
            raise ApiError(
                409,
                "approval_decided",
                f"approval {decided.approval_id} was already {decided.status} "
                f"by {decided.decided_by} at {decided.decided_at}; nothing changed",
            )
        trigger = trigger.model_copy(update={"thread_id": record.thread_id})
        try:
            accepted = await self._publish(trigger)
            if counted:
                progress = api_text(self.wiring.threads.approvals.progress(decided))
                return accepted.model_copy(update={"message": f"your approval counts: {progress}"})
            return accepted
        except StoreUnavailable as exc:
            # The compare-and-set stored the decision; a worker's sweeper applies what was decided but not
            # applied. Answering 503 would invite a second decision that can only be refused.
            log.warning(
                "approval %s: decided by %s, not enqueued (%s); a sweeper will apply it",
                decided.approval_id,
                trigger.sender,
                exc,
            )
            return Accepted(
                thread_id=record.thread_id,
                trigger_id=trigger.id,
                duplicate=False,
                message=f"approval {decided.approval_id} is {decided.status} and recorded; it could not be queued "
                "just now, so a worker applies it shortly. Do not decide again; follow "
                f"GET /v1/threads/{record.thread_id}",
            )

    def _edit_of(self, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> dict[str, object] | None:
        try:
            found = self.wiring.threads.approvals.edit_of(trigger, record)
        except ApprovalError as exc:
            raise ApiError(422, "edit_refused", api_text(str(exc))) from exc
        return found[0] if found is not None else None

    async def _edit(self, trigger: ev.DecisionTrigger, record: ApprovalRecord, after: dict[str, object]) -> Accepted:
        """An approval with edited arguments: no compare-and-set here, as the edit ends this request and opens
        another (with its own digest and policy) in one commit, which a worker makes under the thread's lease;
        it is checked now as the worker will check it, so a refusal is an answer, not a later notice."""
        approvals = self.wiring.threads.approvals
        if refusal := approvals.refusal_to_decide(trigger, record):
            raise ApiError(409, "approval_refused", api_text(refusal))
        if record.expires_at <= self.wiring.threads.clock.now():
            raise ApiError(409, "approval_expired", api_text(approvals.expired(record)))
        accepted = await self._publish(trigger.model_copy(update={"thread_id": record.thread_id}))
        new = digest(record.tool, after, record.thread_id)
        return accepted.model_copy(
            update={
                "message": f"your edit of {record.tool} is queued: approval {record.approval_id} ends and a new "
                f"request for the edited call (digest {new[:SHORT_DIGEST]}) takes its place; your approval counts "
                f"towards it where its policy lets you. Follow GET /v1/threads/{record.thread_id}"
            }
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _no_decision(self, text: str) -> None:
        if (answer := parse_decision(text)) is not None:
            raise ApiError(
                422,
                "use_decision_endpoint",
                f"{text[:40]!r} reads as a decision; decide with POST /v1/approvals/{answer.approval_id}/decision",
            )

    async def _publish(self, trigger: ev.Trigger) -> Accepted:
        fresh = await self.wiring.bus.publish(trigger)
        thread_id = trigger.thread_id
        return Accepted(thread_id=thread_id, trigger_id=trigger.id, duplicate=not fresh)
