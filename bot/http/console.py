"""The web console: static pages at `/` and the `web` channel's endpoints under `/web`.

The page is plain HTML, CSS and JavaScript shipped in `bot/console/` (no CDN, no framework).
It authenticates with a bearer token it reads once from the URL fragment (`/#token=...`) and
keeps in sessionStorage. The chat is the `web` channel (`adapters/web.py`); the approvals inbox
and the thread view use the REST API; all three update live over Server-Sent Events
(`bot/http/live.py`). `/console/signin.json` (no token needed) tells the sign-in page how this
server's tokens are configured, so a wrong token is explained for this setup.
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from adapters.web import CONVERSATION, POSITION, WebChannel
from bot.http.auth import TokenAuth
from bot.http.errors import ApiError, responses
from bot.http.ops import Operations
from bot.http.schemas import Accepted, Approve, Reject, Text
from config import resources
from config.channels import HttpSettings
from core.domain import events as ev
from core.model.commands import usable_tools, usage

CONSOLE_DIR = resources.shipped("bot") / "console"  # the page, its script and style: package data
MAX_WAIT_SECONDS = 25.0

ConversationId = Annotated[str, Field(pattern=CONVERSATION.pattern, description="the browser's conversation id")]


class WebMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    conversation: ConversationId
    text: Text
    answers: str = Field(
        "", max_length=64, pattern=r"^[A-Za-z0-9_-]*$", description="a choice's click: the question's call id"
    )


class _OnCard(BaseModel):
    conversation: ConversationId
    approval_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class WebApprove(Approve, _OnCard):
    pass


class WebReject(Reject, _OnCard):
    pass


WebDecision = Annotated[WebApprove | WebReject, Field(discriminator="decision")]


class ToolParameters(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="the tool's JSON schema for its arguments")


class Command(BaseModel):
    usage: str = Field(description="how to type it, e.g. `/deploy <service> <version> <environment>`")
    description: str
    approval: bool = Field(description="whether running it waits for an approver")


class Commands(BaseModel):
    commands: list[Command]


class WebUpdates(BaseModel):
    after: str = Field(description="pass it back as `after` to get what follows")
    items: list[ev.Outbound]


def web_router(ops: Operations, auth: TokenAuth, web: WebChannel, draining: asyncio.Event) -> APIRouter:
    router = APIRouter(prefix="/web", tags=["web console"])
    Identity = Annotated[str, Depends(auth)]

    @router.post(
        "/messages",
        status_code=202,
        response_model=Accepted,
        responses=responses(401, 422, 503),
        summary="Say something in a console conversation",
    )
    async def message(body: WebMessage, identity: Identity) -> Accepted:
        return await ops.message(web.message(identity, body.conversation, body.text, body.answers))

    @router.get(
        "/commands",
        response_model=Commands,
        responses=responses(401, 503),
        summary="The commands this identity may use (what the empty chat suggests)",
    )
    async def commands(identity: Identity) -> Commands:
        specs = usable_tools(ops.wiring.tools, identity)
        return Commands(commands=[Command(usage=usage(s), description=s.description, approval=s.gated) for s in specs])

    @router.post(
        "/decisions",
        status_code=202,
        response_model=Accepted,
        responses=responses(401, 403, 404, 409, 422, 503),
        summary="Click Approve or Reject on a card",
    )
    async def decision(body: Annotated[WebDecision, Body()], identity: Identity) -> Accepted:
        approve = body.decision == "approve"
        decided = web.decision(identity, body.conversation, body.approval_id.lower(), approve, body.comment)
        edits = getattr(body, "args", None)  # an approval only: "Edit" on the card
        return await ops.decide(decided.model_copy(update={"digest": body.digest or "", "args": edits}))

    @router.get(
        "/tools/{name}",
        response_model=ToolParameters,
        responses=responses(401, 404, 503),
        summary="A tool's parameters (its JSON schema): what a card's Edit form is built from",
    )
    async def tool(
        name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_:.-]{1,100}$")], identity: Identity
    ) -> ToolParameters:
        if name not in ops.wiring.tools:
            raise ApiError(404, "tool_not_found", f"there is no tool {name!r}; the console lists them in its commands")
        spec = ops.wiring.tools.get(name)
        return ToolParameters(name=name, description=spec.description, parameters=spec.parameters)

    @router.get(
        "/updates",
        response_model=WebUpdates,
        responses=responses(401, 422, 503),
        summary="Long-poll the conversation's new messages",
    )
    async def updates(
        identity: Identity,
        conversation: Annotated[str, Query(pattern=CONVERSATION.pattern)],
        after: Annotated[str | None, Query(pattern=POSITION.pattern, description="omit to start from now")] = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for news")] = 20,
    ) -> WebUpdates:
        if after is None:
            return WebUpdates(after=await web.position(), items=[])
        position, items = await web.updates(identity, conversation, after, wait, draining)
        return WebUpdates(after=position, items=items)

    return router


async def _index(request: object) -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-store"})


def signin_help(http: HttpSettings | None) -> dict[str, str]:
    """What the sign-in page says about tokens here: from BOT_API_TOKENS, or the link printed at start-up."""
    if http is not None and http.api_tokens is not None and http.api_tokens.get_secret_value().strip():
        return {
            "tokens": "configured",
            "hint": "Paste your token from BOT_API_TOKENS (whoever runs the bot hands them out), "
            "or open <console address>/#token=<your token>.",
        }
    return {
        "tokens": "one-time",
        "hint": "BOT_API_TOKENS is not set, so this console takes the link the bot printed when it started "
        "(`web console: …/#token=…`); that token changes at every start, so open the newest link. "
        "To give people lasting tokens, set BOT_API_TOKENS=token=identity and restart.",
    }


def console_routes(http: HttpSettings | None = None) -> list[BaseRoute]:
    """The page, its files (script, style, favicon) and `signin.json`; `http`: the settings the server runs with."""
    info = signin_help(http)

    async def signin(request: object) -> JSONResponse:
        return JSONResponse(info, headers={"Cache-Control": "no-store"})

    return [
        Route("/", _index, methods=["GET"], include_in_schema=False),
        Route("/console/signin.json", signin, methods=["GET"], include_in_schema=False),
        Mount("/console", app=StaticFiles(directory=CONSOLE_DIR), name="console"),
    ]
