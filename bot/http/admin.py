"""What operators use beside the threads: `/metrics` and the dead letters.

`/metrics` needs a token whose identity is in `[access].metrics` or `[access].admins` (give
Prometheus its own token: `BOT_API_TOKENS=...=svc:prometheus` and `metrics = ["svc:prometheus"]`,
then `authorization: {credentials_file: ...}` in the scrape config). The dead-letter routes need
`[access].admins`.
(No `from __future__ import annotations` here: FastAPI reads the routes' annotations.)
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from bot.http.auth import TokenAuth
from bot.http.errors import ApiError, responses
from bot.http.metrics import exposition
from bot.http.ops import Operations
from bot.http.schemas import Accepted, DeadLetterList, DeadLetterView
from core.redis.dead_letters import DeadLetters, NoDeadLetter, NotATrigger

StreamId = Annotated[str, Path(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$", description="a dead-letter id")]
AUTH = (401, 403, 429, 503)


def admin_router(ops: Operations, auth: TokenAuth) -> APIRouter:
    router = APIRouter()
    Identity = Annotated[str, Depends(auth)]
    letters = DeadLetters(ops.wiring.bus)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={**responses(*AUTH), 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        tags=["admin"],
        summary="Prometheus metrics: the process's counters and the queues' gauges",
    )
    async def metrics(identity: Identity) -> Response:
        ops.access.check_metrics(identity)
        body, media_type = await exposition(ops.wiring)
        return Response(body, media_type=media_type)

    @router.get(
        "/v1/admin/dead-letters",
        response_model=DeadLetterList,
        responses=responses(*AUTH, 422),
        tags=["admin"],
        summary="Triggers parked on the dead-letter stream, newest first",
    )
    async def dead_letters(
        identity: Identity,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[str, Query(pattern=r"^([0-9]{1,20}-[0-9]{1,20})?$", description="`next_before`")] = "",
    ) -> DeadLetterList:
        ops.access.check_admin(identity, "read the dead letters")
        page, following = await letters.page(limit, before)
        return DeadLetterList(
            letters=[DeadLetterView(id=x.id, entry=x.entry, trigger=x.trigger, error=x.error) for x in page],
            next_before=following or None,
        )

    @router.post(
        "/v1/admin/dead-letters/{letter_id}/retry",
        status_code=202,
        response_model=Accepted,
        responses=responses(*AUTH, 404, 409, 422),
        tags=["admin"],
        summary="Send a dead letter's trigger to the inbox again (once) and remove it",
    )
    async def retry(letter_id: StreamId, identity: Identity) -> Accepted:
        ops.access.check_admin(identity, "retry dead letters")
        try:
            trigger, fresh = await letters.retry(letter_id)
        except NoDeadLetter:
            raise ApiError(
                404,
                "dead_letter_not_found",
                f"there is no dead letter {letter_id}; list them with GET /v1/admin/dead-letters",
            ) from None
        except NotATrigger:
            raise ApiError(
                409, "not_a_trigger", f"dead letter {letter_id} is not a valid trigger; send it again from its source"
            ) from None
        return Accepted(
            thread_id=trigger.thread_id,
            trigger_id=trigger.id,
            duplicate=not fresh,
            message="" if fresh else "it was already sent back to the inbox",
        )

    return router
