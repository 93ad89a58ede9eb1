"""Standing grants over HTTP: GET /v1/grants and DELETE /v1/grants/{grant_id} (`core.runtime.grants`).

A grant is seen and revoked by the admins, its grantor, its requester, and the tool's approvers; to anyone
else it does not exist (404). Grants are given with an approval: `grant_for` on POST
/v1/approvals/{approval_id}/decision.
(No `from __future__ import annotations` here: FastAPI reads the routes' annotations.)
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from bot.http.auth import TokenAuth
from bot.http.errors import ApiError, responses
from bot.http.ops import Operations, api_text
from core.domain.errors import ApprovalError
from core.domain.grants import Grant

GrantId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
AUTH = (401, 403, 422, 429, 503)


class GrantView(BaseModel):
    grant_id: str
    tool: str
    requester: str
    args: dict[str, object]
    vary: list[str] = Field(description="arguments the grant leaves open: any value matches")
    pattern: str = Field(description="what it covers, as `name=value` words (`*`: any value)")
    granted_by: str
    approval_id: str = Field(description="the request it was given with")
    thread_id: str
    created_at: datetime
    expires_at: datetime
    status: str = Field(description="live, expired or revoked")
    revoked_by: str = ""
    revoked_at: datetime | None = None


class GrantList(BaseModel):
    grants: list[GrantView]


def grant_view(grant: Grant, now: datetime) -> GrantView:
    status = "revoked" if grant.revoked_at else "live" if grant.live(now) else "expired"
    fields = grant.model_dump(exclude={"channel"})
    return GrantView(**fields, pattern=grant.pattern(), status=status)


def grants_router(ops: Operations, auth: TokenAuth) -> APIRouter:
    router = APIRouter(prefix="/v1")
    Identity = Annotated[str, Depends(auth)]
    grants = ops.wiring.grants

    def may_manage(identity: str, grant: Grant) -> bool:
        return ops.access.admin(identity) or grants.may_manage(identity, grant)

    @router.get(
        "/grants",
        response_model=GrantList,
        responses=responses(*AUTH),
        tags=["approvals"],
        summary="Standing grants you may see: live ones first (soonest to expire), then expired or revoked",
    )
    async def list_grants(identity: Identity) -> GrantList:
        now = grants.clock.now()
        shown = [grant for grant in await grants.listed() if may_manage(identity, grant)]
        return GrantList(grants=[grant_view(grant, now) for grant in shown])

    @router.delete(
        "/grants/{grant_id}",
        response_model=GrantView,
        responses=responses(*AUTH, 404, 409),
        tags=["approvals"],
        summary="Revoke a standing grant now: the calls it covered ask for approval again",
    )
    async def revoke_grant(grant_id: GrantId, identity: Identity) -> GrantView:
        grant = await grants.stored.get(grant_id)
        if grant is None or not may_manage(identity, grant):
            raise ApiError(404, "grant_not_found", f"there is no standing grant {grant_id!r}; see GET /v1/grants")
        try:
            revoked = await grants.revoke(grant_id, identity, check=False)  # checked above, the owner included
        except ApprovalError as exc:
            raise ApiError(409, "grant_ended", api_text(str(exc))) from exc
        return grant_view(revoked, grants.clock.now())

    return router
