"""The REST API (factors 6 and 11): launch, list, show, send input, pause, resume, approve.

Each route is a few lines: read the request, call `Operations` with explicit arguments,
return a model. Every route needs a bearer token; its identity is the requester or decider.
(No `from __future__ import annotations` here: FastAPI reads the routes' annotations, and
`Identity` is local to the router factory.)
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query

from bot.http.auth import TokenAuth
from bot.http.errors import ApiError, responses
from bot.http.inbox import NAME, Filters, inbox_routes
from bot.http.ops import API_CHANNEL, Operations
from bot.http.schemas import (
    Accepted,
    ApprovalList,
    AuditTrail,
    ControlRequest,
    DecisionRequest,
    EventPage,
    InputRequest,
    LaunchRequest,
    Me,
    ThreadDetail,
    ThreadList,
    ThreadSummary,
)
from core.domain import events as ev
from core.domain.ids import new_id, thread_id_for
from core.domain.reducer import replay
from core.redis import keys
from core.redis.audit import AuditLog
from core.redis.paging import Cursor

ThreadId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ApprovalId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
AUTH = (401, 403, 422, 429, 503)


def _cursor(token: str | None) -> Cursor | None:
    try:
        return Cursor.parse(token) if token else None
    except ValueError:
        raise ApiError(
            422, "invalid_request", f"cursor {token!r} is not one this API gave; start again without it"
        ) from None


async def _event_page(ops: Operations, identity: str, thread_id: str, after: int, limit: int) -> EventPage:
    await ops.thread(thread_id, identity)  # 404, or 403 for a thread the identity may not read
    events = await ops.wiring.store.load_events(thread_id, start=after + 1, count=limit + 1)
    more = len(events) > limit
    return EventPage(events=events[:limit], next_after=after + limit if more else None)


def _audit_route(router: APIRouter, ops: Operations, auth: TokenAuth) -> None:
    Identity = Annotated[str, Depends(auth)]

    @router.get(
        "/threads/{thread_id}/audit",
        response_model=AuditTrail,
        responses=responses(*AUTH, 404),
        tags=["threads"],
        summary="A thread's audit trail: its approval facts, hash-chained",
    )
    async def thread_audit(thread_id: ThreadId, identity: Identity) -> AuditTrail:
        await ops.thread(thread_id, identity)  # 404, or 403 for a thread the identity may not read
        return AuditTrail(thread_id=thread_id, records=await AuditLog(ops.wiring.store).thread_records(thread_id))


def api_router(ops: Operations, auth: TokenAuth) -> APIRouter:
    router = APIRouter(prefix="/v1")
    Identity = Annotated[str, Depends(auth)]
    _audit_route(router, ops, auth)
    inbox_routes(router, ops, auth)  # snooze, and several decisions at once: the console's approvals inbox

    @router.get(
        "/me",
        response_model=Me,
        responses=responses(401, 503),
        tags=["identity"],
        summary="Who the bearer token acts as",
    )
    async def me(identity: Identity) -> Me:
        return Me(identity=identity)

    @router.post(
        "/threads",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 409),
        tags=["threads"],
        summary="Launch a thread",
    )
    async def launch(body: LaunchRequest, identity: Annotated[str, Depends(auth.known)]) -> Accepted:
        conversation = body.conversation or f"{API_CHANNEL}/{new_id()}"
        thread_id = thread_id_for(body.channel, conversation)
        trigger = ev.MessageTrigger(
            id=new_id(),
            channel=body.channel,
            conversation=conversation,
            sender=identity,
            text=body.text,
            agent=body.agent or "",
            reply_to=body.reply_to,
            thread_id=thread_id,
        )
        return await ops.launch(trigger, fresh=body.conversation is None)

    @router.get(
        "/threads",
        response_model=ThreadList,
        responses=responses(*AUTH),
        tags=["threads"],
        summary="Recent threads with their derived state",
    )
    async def list_threads(
        identity: Identity,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the page before")] = None,
        order: Annotated[
            Literal["created", "updated"],
            Query(
                description="newest first by creation (each thread on exactly one page), or by last write (a "
                "thread written while you page moves to the first page)"
            ),
        ] = "created",
        status: Annotated[str | None, Query(max_length=40, description="only threads with this status")] = None,
        agent: Annotated[str | None, Query(max_length=64, description="only threads this agent holds")] = None,
        channel: Annotated[str | None, Query(max_length=64, description="only threads on this channel")] = None,
    ) -> ThreadList:
        states, following = await ops.wiring.store.page_threads(limit, _cursor(cursor), by=order)
        states = [  # a page may come short
            state
            for state in states
            if ops.access.may_read(identity, state)
            and status in (None, state.effective_status)
            and agent in (None, state.agent)
            and channel in (None, state.channel)
        ]
        return ThreadList(
            threads=[ThreadSummary.of(state) for state in states],
            next_cursor=following.token() if following else None,
        )

    @router.get(
        "/threads/{thread_id}/events",
        response_model=EventPage,
        responses=responses(*AUTH, 404),
        tags=["threads"],
        summary="A thread's events after a position, a page at a time",
    )
    async def thread_events(
        thread_id: ThreadId,
        identity: Identity,
        after: Annotated[int, Query(ge=0, description="the last event seen (0: from the start)")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventPage:
        return await _event_page(ops, identity, thread_id, after, limit)

    @router.get(
        "/threads/{thread_id}",
        response_model=ThreadDetail,
        responses=responses(*AUTH, 404),
        tags=["threads"],
        summary="A thread's events and its state as of any event",
    )
    async def show_thread(
        thread_id: ThreadId,
        identity: Identity,
        at: Annotated[int | None, Query(ge=1, description="derive the state as of this event (1-based)")] = None,
    ) -> ThreadDetail:
        await ops.thread(thread_id, identity)  # 404, or 403 for a thread the identity may not read
        events = await ops.wiring.store.load_events(thread_id)
        if at is not None and at > len(events):
            raise ApiError(
                422,
                "invalid_request",
                f"at={at} is past the end; thread {thread_id} has {len(events)} events, so use 1..{len(events)}",
            )
        until = len(events) if at is None else at
        now = replay(events, thread_id=thread_id, stored=True)
        state = now if until == len(events) else replay(events[:until], thread_id=thread_id, stored=True)
        return ThreadDetail(thread=ThreadSummary.of(now), at=until, state=state, events=events)

    @router.post(
        "/threads/{thread_id}/events",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 404),
        tags=["threads"],
        summary="Send input to a thread",
    )
    async def send_input(thread_id: ThreadId, body: InputRequest, identity: Identity) -> Accepted:
        return await ops.send_input(thread_id, identity, body.text)

    @router.post(
        "/threads/{thread_id}/pause",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 404, 409),
        tags=["threads"],
        summary="Pause a thread",
    )
    async def pause(
        thread_id: ThreadId, identity: Identity, body: Annotated[ControlRequest | None, Body()] = None
    ) -> Accepted:
        return await ops.control(thread_id, identity, "pause", body.reason if body else "")

    @router.post(
        "/threads/{thread_id}/resume",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 404, 409),
        tags=["threads"],
        summary="Resume a paused thread",
    )
    async def resume(thread_id: ThreadId, identity: Identity) -> Accepted:
        return await ops.control(thread_id, identity, "resume")

    @router.get(
        "/approvals",
        response_model=ApprovalList,
        responses=responses(*AUTH),
        tags=["approvals"],
        summary="Approvals across all channels: pending (soonest to expire first), ended, or by requester or decider "
        "(most recent first); filtered by agent, tool and channel too",
    )
    async def approvals(
        identity: Identity,
        status: Annotated[
            Literal["pending", "snoozed", "approved", "rejected", "expired"] | None,
            Query(
                description="default: pending, or any status with `requester` or `decided_by`; snoozed: pending "
                "and put off by an approver (`POST /v1/approvals/{id}/snooze`)"
            ),
        ] = None,
        requester: Annotated[str | None, Query(min_length=3, max_length=200, description="who asked")] = None,
        decided_by: Annotated[str | None, Query(min_length=3, max_length=200, description="who decided")] = None,
        agent: Annotated[str | None, Query(pattern=NAME, description="the agent whose thread asked")] = None,
        tool: Annotated[str | None, Query(min_length=1, max_length=200, description="the gated tool")] = None,
        channel: Annotated[str | None, Query(pattern=NAME, description="the channel the request came from")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Query(max_length=400, description="`next_cursor` of the page before")] = None,
    ) -> ApprovalList:
        if decided_by or requester:
            index = keys.approvals_decided_by(decided_by) if decided_by else keys.approvals_requested_by(str(requester))
        else:
            status = status or "pending"
            index = keys.APPROVAL_INDEX if status in ("pending", "snoozed") else keys.approvals_ended(status)
        newest_first = index != keys.APPROVAL_INDEX
        records, following = await ops.wiring.store.page_approvals(
            index, limit, _cursor(cursor), newest_first=newest_first
        )
        wanted = Filters(status=status, requester=requester, agent=agent, tool=tool, channel=channel)
        shown = [
            record
            for record in await wanted.apply(records, ops.wiring.store, ops.wiring.threads.clock.now())
            if ops.access.may_see(identity, record)
        ]
        return ApprovalList(
            approvals=[ops.view(record, identity) for record in shown],
            next_cursor=following.token() if following else None,
        )

    @router.post(
        "/approvals/{approval_id}/decision",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 403, 404, 409),
        tags=["approvals"],
        summary="Approve or reject; permissions apply as in chat",
    )
    async def decide(approval_id: ApprovalId, body: Annotated[DecisionRequest, Body()], identity: Identity) -> Accepted:
        trigger = ev.DecisionTrigger(
            id=new_id(),
            channel=API_CHANNEL,
            conversation=f"{API_CHANNEL}/{identity}",
            sender=identity,
            approval_id=approval_id.lower(),
            decision=body.decision,
            comment=body.comment,
            digest=body.digest or "",
            grant_for=getattr(body, "grant_for", None),  # an approval only
            args=getattr(body, "args", None),
        )
        return await ops.decide(trigger)

    return router
