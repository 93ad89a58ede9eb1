"""Live updates for the web console by Server-Sent Events: the chat, the approvals inbox and badge, a thread.

Both streams are authenticated like the rest of the API, by the `Authorization: Bearer` header. The
console reads them with `fetch` and a stream reader rather than `EventSource`, which cannot send a
header: so the token stays where the console already keeps it, and never goes into a URL (access
logs, proxies, browser history).

- `GET /web/live?conversation=<id>`: everything the console shows outside a thread. It follows the
  outbox stream of every channel (`outbox:<channel>`, written by whichever worker process commits
  the step, in the same script as the thread's events). The `web` channel's messages for this
  person's conversation become `outbound` events. An approval request or a decision receipt on any
  channel becomes an `approval` event: the approval record as `GET /v1/approvals` lists it, read
  again from the store so its status is the current one, only for an identity that may see it.
- `GET /web/live/threads/{thread_id}?after=<n>`: the thread's events after the `n`th
  (`thread:{id}:log`), one `event` each, while the thread view is open.

Every event's id says where the stream stands (`web=1733-0,api=1733-1,...`, or the thread's event
number): a client that lost its connection sends it back as `Last-Event-ID` and gets what it missed.
The first event, `ready`, carries the starting position. A comment line every `PING_SECONDS` keeps
proxies from closing an idle stream and lets the client notice a dead one.

(No `from __future__ import annotations`: FastAPI reads the routes' annotations, as in `api.py`.)
"""

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from adapters.web import CHANNEL as WEB
from adapters.web import CONVERSATION, WebChannel
from bot.http.auth import TokenAuth
from bot.http.errors import ApiError, responses
from bot.http.ops import Operations
from core.domain.errors import StoreUnavailable
from core.domain.events import OUTBOUND_ADAPTER, ApprovalRequest, DecisionReceipt, Outbound
from core.redis import keys
from core.redis.store import redis_errors

log = logging.getLogger(__name__)

# The outboxes followed, besides the channels the configuration names (schedules, approval notices).
CHANNELS = (WEB, "api", "cli", "slack", "discord", "email")
PING_SECONDS = 15.0
READ_COUNT = 100
CLUSTER_POLL_SECONDS = 0.2  # Redis Cluster: one XREAD cannot span slots, so the outboxes are polled
STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
POSITION_PART = re.compile(r"^([A-Za-z0-9_-]{1,64})=([0-9]{1,20}-[0-9]{1,20})$")
MAX_POSITION_CHARS = 4000

ThreadId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=MAX_POSITION_CHARS)]


def parse_position(raw: str | None) -> dict[str, str]:
    """`web=1-0,api=2-0` -> {"web": "1-0", "api": "2-0"}; a malformed one is a 422 naming the part."""
    found: dict[str, str] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        match = POSITION_PART.match(part.strip())
        if match is None:
            raise ApiError(
                422,
                "invalid_request",
                f"Last-Event-ID part {part.strip()[:80]!r} is not `channel=<stream id>`; reconnect without it",
            )
        found[match.group(1)] = match.group(2)
    return found


def format_position(positions: dict[str, str]) -> str:
    return ",".join(f"{channel}={at}" for channel, at in positions.items())


def configured_channels(ops: Operations, extra: Iterable[str] = ()) -> list[str]:
    """Every outbox an approval request can be written to: the usual channels and those the configuration names."""
    wiring = ops.wiring
    named = [schedule.channel for schedule in wiring.schedules]
    for name in wiring.tools.names():
        named += [c for policy in wiring.tools.get(name).every_policy for c in policy.notify]
    return list(dict.fromkeys([*CHANNELS, *named, *extra]))


class Feed:
    """One console's view of the outboxes: the next messages and approvals it should be shown."""

    def __init__(self, ops: Operations, identity: str, conversation: str | None, positions: dict[str, str]) -> None:
        self.ops = ops
        self.redis = ops.wiring.redis
        self.identity = identity
        self.key = WebChannel.conversation_key(identity, conversation) if conversation else None
        self.positions = positions
        self.shown: dict[str, str] = {}  # approval id -> status last sent: a copy on another channel is not news

    @classmethod
    async def start(
        cls, ops: Operations, identity: str, conversation: str | None, channels: list[str], resume: dict[str, str]
    ) -> "Feed":
        """From `resume` where given, else from the newest entry of each outbox (what follows is news)."""
        missing = [channel for channel in channels if channel not in resume]
        positions = {channel: at for channel, at in resume.items() if channel in channels}
        if missing:
            with redis_errors():
                async with ops.wiring.redis.pipeline(transaction=False) as pipe:
                    for channel in missing:
                        pipe.xrevrange(keys.outbox(channel), count=1)
                    newest: list[Any] = await pipe.execute()
            for channel, last in zip(missing, newest, strict=True):
                positions[channel] = last[0][0].decode() if last else "0-0"
        return cls(ops, identity, conversation, {channel: positions[channel] for channel in channels})

    @property
    def position(self) -> str:
        return format_position(self.positions)

    async def read(self, block_ms: int) -> list[tuple[bytes, bytes, dict[bytes, bytes]]]:
        """The next entries of the outboxes as (stream, entry id, fields); waits up to `block_ms` for one."""
        streams: dict[Any, Any] = {keys.outbox(channel): at for channel, at in self.positions.items()}
        fresh: Any
        with redis_errors():
            if self.ops.wiring.store.cluster:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, at in streams.items():
                        pipe.xread({stream: at}, count=READ_COUNT)
                    replies: list[Any] = await pipe.execute()
                fresh = [item for reply in replies for item in reply or []]
                if not fresh:
                    await asyncio.sleep(min(block_ms / 1000, CLUSTER_POLL_SECONDS))
            else:
                fresh = await self.redis.xread(streams, count=READ_COUNT, block=block_ms)
        return [(stream, entry_id, fields) for stream, entries in fresh or [] for entry_id, fields in entries]

    async def events(self, stream: bytes, entry_id: bytes, fields: dict[bytes, bytes]) -> list[ServerSentEvent]:
        """What one outbox entry shows this console; the position moves past it either way."""
        channel = stream.decode().removeprefix("outbox:")
        self.positions[channel] = entry_id.decode()
        try:
            outbound: Outbound = OUTBOUND_ADAPTER.validate_json(fields[b"o"])
        except (KeyError, ValidationError):
            return []  # not a message this version knows; the channel's own renderer reports it
        shown: list[ServerSentEvent] = []
        if channel == WEB and self.key is not None and WebChannel.visible(self.identity, self.key, outbound):
            shown.append(ServerSentEvent(data=outbound.model_dump_json(), event="outbound", id=self.position))
        if isinstance(outbound, ApprovalRequest | DecisionReceipt):
            record = await self.ops.wiring.store.get_approval(outbound.approval_id)
            # A snooze is news too (the inbox marks the card), though the status stays "pending".
            mark = f"{record.status} {record.snoozed_until}" if record is not None else ""
            fresh = record is not None and self.shown.get(record.approval_id) != mark
            if record is not None and fresh and self.ops.access.may_see(self.identity, record):
                self.shown[record.approval_id] = mark
                view = self.ops.view(record, self.identity)
                shown.append(ServerSentEvent(data=view.model_dump_json(), event="approval", id=self.position))
        return shown


async def _until(draining: asyncio.Event, work: Any) -> Any:
    """`work`'s result, or None when the server starts stopping first (the read is then cancelled)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(draining.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        return task.result() if task.done() else None
    finally:
        for pending in (task, stop):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending


async def _console_stream(feed: Feed, draining: asyncio.Event, resumed: bool) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(data=json.dumps({"resumed": resumed}), event="ready", id=feed.position)
    block_ms = int(PING_SECONDS * 1000)
    try:
        while not draining.is_set():
            entries = await _until(draining, feed.read(block_ms))
            for stream, entry_id, fields in entries or []:
                for event in await feed.events(stream, entry_id, fields):
                    yield event
    except StoreUnavailable as exc:  # the client reconnects from the last id it got, with backoff
        log.warning("live console stream for %s ended: %s", feed.identity, exc)


async def _thread_stream(
    ops: Operations, thread_id: str, after: int, draining: asyncio.Event
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(data=json.dumps({"after": after}), event="ready", id=str(after))
    log_key, at = keys.thread_log(thread_id), f"{after}-0"
    try:
        while not draining.is_set():
            with redis_errors():
                fresh: Any = await _until(
                    draining, ops.wiring.redis.xread({log_key: at}, count=READ_COUNT, block=int(PING_SECONDS * 1000))
                )
            for _, entries in fresh or []:
                for entry_id, fields in entries:
                    at = entry_id.decode()
                    yield ServerSentEvent(data=fields[b"e"].decode(), event="event", id=at.partition("-")[0])
    except StoreUnavailable as exc:
        log.warning("live stream of thread %s ended: %s", thread_id, exc)


def live_router(ops: Operations, auth: TokenAuth, draining: asyncio.Event, channels: Iterable[str] = ()) -> APIRouter:
    """The console's two event streams; `channels`: outboxes to follow besides `configured_channels`."""
    router = APIRouter(prefix="/web/live", tags=["web console"])
    Identity = Annotated[str, Depends(auth)]
    followed = configured_channels(ops, channels)

    @router.get(
        "",
        responses=responses(401, 422, 503),
        summary="Live: this conversation's messages and the approvals you may see, as Server-Sent Events",
        response_class=EventSourceResponse,
    )
    async def console(
        identity: Identity,
        conversation: Annotated[str | None, Query(pattern=CONVERSATION.pattern)] = None,
        last_event_id: LastEventId = None,
    ) -> EventSourceResponse:
        resume = parse_position(last_event_id)
        feed = await Feed.start(ops, identity, conversation, followed, resume)
        return EventSourceResponse(_console_stream(feed, draining, bool(resume)), ping=PING_SECONDS)

    @router.get(
        "/threads/{thread_id}",
        responses=responses(401, 403, 404, 422, 503),
        summary="Live: a thread's new events, as Server-Sent Events",
        response_class=EventSourceResponse,
    )
    async def thread(
        thread_id: ThreadId,
        identity: Identity,
        after: Annotated[int, Query(ge=0, description="the last event the page has (Last-Event-ID wins)")] = 0,
        last_event_id: LastEventId = None,
    ) -> EventSourceResponse:
        await ops.thread(thread_id, identity)  # 404, or 403 for a thread the identity may not read
        if last_event_id:
            if not last_event_id.isdigit():
                raise ApiError(422, "invalid_request", "Last-Event-ID is not an event number; reconnect without it")
            after = int(last_event_id)
        return EventSourceResponse(_thread_stream(ops, thread_id, after, draining), ping=PING_SECONDS)

    return router
