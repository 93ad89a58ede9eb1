"""The approvals inbox's API beside the list: filters, "not now", and several decisions at once.

- Filters (`GET /v1/approvals?agent=&tool=&channel=&requester=&status=`) apply to a page of the index the
  query picks, so a page may come short; `next_cursor` still goes on.
- `POST /v1/approvals/{id}/snooze` puts a pending request off ("ask me again in 30 min") without deciding it:
  checked now with the core's own rule (`Snoozes.refusal`), then a worker records it and tells the requester.
- `POST /v1/approvals/decisions` decides several: each one through the single decision path
  (`Operations.decide`: permission, digest, the compare-and-set), so each is single-use and refused on
  its own; the answer reports every item's outcome, in the order asked.

(No `from __future__ import annotations`: FastAPI reads the routes' annotations.)
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.http.auth import TokenAuth
from bot.http.errors import ApiError, responses
from bot.http.ops import API_CHANNEL, Operations, api_text
from bot.http.schemas import Accepted, Comment
from core.domain import events as ev
from core.domain.durations import seconds, words
from core.domain.ids import new_id
from core.domain.people import when
from core.redis.store import ApprovalRecord, Store

NAME = r"^[a-z][a-z0-9_-]{0,31}$"  # an agent's or a channel's name
ID = r"^[A-Za-z0-9_-]+$"
MAX_BULK = 50
MAX_SNOOZE = 7 * 24 * 3600  # longer than any approval lives; a bound so no arithmetic overflows
AUTH = (401, 403, 422, 429, 503)

ApprovalId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID)]


@dataclass(frozen=True)
class Filters:
    """What the inbox asks for; `None` is "any"."""

    status: str | None = None  # "snoozed": pending, and put off until later
    requester: str | None = None
    agent: str | None = None
    tool: str | None = None
    channel: str | None = None

    async def apply(self, records: list[ApprovalRecord], store: Store, now: datetime) -> list[ApprovalRecord]:
        kept = [record for record in records if self._fits(record, now)]
        if self.agent is None:
            return kept
        # A request stored before records named their agent: its thread's agent then.
        agents = {r.approval_id: r.agent or (await store.load_state(r.thread_id)).agent for r in kept}
        return [record for record in kept if agents[record.approval_id] == self.agent]

    def _fits(self, record: ApprovalRecord, now: datetime) -> bool:
        snoozed = record.status == "pending" and record.snoozed_until is not None and record.snoozed_until > now
        if self.status == "snoozed" and not snoozed:
            return False
        if self.status not in (None, "snoozed") and record.status != self.status:
            return False
        return all(
            wanted is None or wanted == got
            for wanted, got in (
                (self.requester, record.requester),
                (self.tool, record.tool),
                (self.channel, record.channel),
            )
        )


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    duration: str = Field(
        default="30m",
        pattern=r"^(?:[0-9]+[dhms])+$|^[0-9]+$",
        max_length=12,
        description="how long until the request is asked again: seconds, or e.g. 30m, 1h30m; it must end before "
        "the request expires",
        examples=["30m"],
    )
    digest: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{8,64}$", description="the digest the card shows")


class BulkDecisionRequest(BaseModel):
    """The same answer to several approvals; a rejection says why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_ids: list[Annotated[str, Field(min_length=1, max_length=64, pattern=ID)]] = Field(
        min_length=1, max_length=MAX_BULK
    )
    decision: Literal["approve", "reject"]
    comment: Comment = ""

    @model_validator(mode="after")
    def _reason_for_rejection(self) -> "BulkDecisionRequest":
        if self.decision == "reject" and not self.comment:
            raise ValueError("a rejection needs a comment saying why; the reason goes back to each thread")
        return self


class ItemOutcome(BaseModel):
    approval_id: str
    status: int = Field(description="what deciding this one alone would have answered: 202, or 403, 404, 409")
    code: str = Field(default="", description="the error's code when refused (approval_decided, not_an_approver, ...)")
    message: str = ""
    thread_id: str = ""


class BulkOutcome(BaseModel):
    results: list[ItemOutcome]
    accepted: int = Field(description="how many were accepted (202)")


def inbox_routes(router: APIRouter, ops: Operations, auth: TokenAuth) -> None:
    Identity = Annotated[str, Depends(auth)]

    @router.post(
        "/approvals/{approval_id}/snooze",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 404, 409),
        tags=["approvals"],
        summary="Not now: ask for a pending approval again later, without deciding it; its deadlines stay",
    )
    async def snooze(
        approval_id: ApprovalId, identity: Identity, body: Annotated[SnoozeRequest | None, Body()] = None
    ) -> Accepted:
        asked = body or SnoozeRequest()
        length = _seconds(asked.duration)
        if not 0 < length <= MAX_SNOOZE:
            raise ApiError(422, "invalid_snooze", f"a snooze of {asked.duration!r} is not between 1s and 7d")
        trigger = ev.SnoozeTrigger(
            id=new_id(),
            channel=API_CHANNEL,
            conversation=f"{API_CHANNEL}/{identity}",
            sender=identity,
            approval_id=approval_id.lower(),
            seconds=length,
            digest=asked.digest or "",
        )
        return await snooze_now(ops, trigger)

    @router.post(
        "/approvals/decisions",
        response_model=BulkOutcome,
        responses=responses(*AUTH),
        tags=["approvals"],
        summary="Approve or reject several approvals; each is decided on its own, as if alone",
    )
    async def decide_several(body: Annotated[BulkDecisionRequest, Body()], identity: Identity) -> BulkOutcome:
        results = [await _decide_one(ops, identity, approval_id, body) for approval_id in _once(body)]
        return BulkOutcome(results=results, accepted=sum(result.status == 202 for result in results))


async def snooze_now(ops: Operations, trigger: ev.SnoozeTrigger) -> Accepted:
    """The core's checks now (permission, digest, pending, before the deadline), then a worker records it."""
    record = await ops.approval(trigger.approval_id)
    tools, now = ops.wiring.tools, ops.wiring.threads.clock.now()
    state = await ops.wiring.store.load_state(record.thread_id)
    if refusal := ops.wiring.threads.snoozes.refusal(trigger, record, state):
        if not tools.may_approve(trigger.sender, record.allowed, record.requester, record.allow_self):
            raise ApiError(403, "not_an_approver", api_text(refusal))
        if record.status == "expired" or (record.status == "pending" and record.expires_at <= now):
            raise ApiError(409, "approval_expired", api_text(refusal))
        if record.status != "pending":
            raise ApiError(409, "approval_decided", api_text(refusal))
        code = (
            "snooze_too_long" if now + timedelta(seconds=trigger.seconds) >= record.expires_at else "approval_refused"
        )
        raise ApiError(409, code, api_text(refusal))
    accepted = await ops.wiring.bus.publish(trigger.model_copy(update={"thread_id": record.thread_id}))
    until = now + timedelta(seconds=trigger.seconds)
    return Accepted(
        thread_id=record.thread_id,
        trigger_id=trigger.id,
        duplicate=not accepted,
        message=api_text(
            f"approval {record.approval_id} is snoozed for {words(trigger.seconds)}: asked again at {when(until)}; "
            f"it still expires at {when(record.expires_at)}"
        ),
    )


async def _decide_one(ops: Operations, identity: str, approval_id: str, body: BulkDecisionRequest) -> ItemOutcome:
    trigger = ev.DecisionTrigger(
        id=new_id(),
        channel=API_CHANNEL,
        conversation=f"{API_CHANNEL}/{identity}",
        sender=identity,
        approval_id=approval_id,
        decision=body.decision,
        comment=body.comment,
    )
    try:
        accepted = await ops.decide(trigger)
    except ApiError as exc:
        return ItemOutcome(approval_id=approval_id, status=exc.status, code=exc.code, message=exc.message)
    return ItemOutcome(approval_id=approval_id, status=202, message=accepted.message, thread_id=accepted.thread_id)


def _once(body: BulkDecisionRequest) -> list[str]:
    """The ids asked for, each once, in the order given."""
    return list(dict.fromkeys(approval_id.lower() for approval_id in body.approval_ids))


def _seconds(text: str) -> int:
    try:
        return int(seconds(text))
    except ValueError as exc:
        raise ApiError(422, "invalid_snooze", f"{exc}; e.g. 30m") from None
