"""The console's Server-Sent Event streams (`bot/http/live.py`), read with a plain HTTP client.

The worker runs beside the server, as `bot run` has; approvals are created by other clients through
the API, so what a stream shows came through Redis, not from the request that made it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bot.http import live
from tests.eventually import eventually
from tests.web.conftest import ALICE, BOB, CAROL, DAVE, Server

DEADLINE_SECONDS = 15


@dataclass
class Sse:
    event: str
    data: str
    id: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class Stream:
    """An open event stream: `next()` is its next event (comments counted in `comments`)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self._buffer = ""

    async def next(self, event: str | None = None) -> Sse:
        """The next event (of type `event`, skipping others), failing after the deadline."""
        async with asyncio.timeout(DEADLINE_SECONDS):
            while True:
                while "\n\n" not in self._buffer:
                    chunk = await self.response.content.readany()
                    assert chunk, "the stream ended"
                    self._buffer += chunk.decode().replace("\r\n", "\n")
                block, self._buffer = self._buffer.split("\n\n", 1)
                fields: dict[str, str] = {}
                for line in block.split("\n"):
                    name, _, value = line.partition(":")
                    if name == "":
                        self.comments.append(value.strip())
                    else:
                        fields[name] = fields.get(name, "") + value.removeprefix(" ")
                if "data" in fields and (event is None or fields.get("event") == event):
                    return Sse(fields.get("event", "message"), fields["data"], fields.get("id"))


@pytest.fixture
async def console(fake_redis, start_server) -> AsyncIterator[Server]:
    server = await start_server(fake_redis)
    worker = server.harness.wiring.worker("live-worker")
    working = asyncio.create_task(worker.run(block_ms=100))
    yield server
    worker.stop()
    await working


@pytest.fixture
async def open_stream(console: Server) -> AsyncIterator[Any]:
    responses: list[aiohttp.ClientResponse] = []

    async def start(path: str, token: str = ALICE, last_event_id: str | None = None) -> Stream:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        response = await console.session.get(console.url + path, headers=headers)
        responses.append(response)
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return Stream(response)

    yield start
    for response in responses:
        response.close()


async def test_an_approval_created_elsewhere_reaches_the_approvers_stream(console: Server, open_stream) -> None:
    alice = await open_stream("/web/live")
    dave = await open_stream("/web/live", token=DAVE)
    assert (await alice.next()).event == "ready"
    assert (await dave.next()).event == "ready"

    launched = await console.call("POST", "/v1/threads", token=BOB, json={"text": "/restart api production"})
    assert launched.status == 202
    card = await alice.next("approval")
    assert card.json["tool"] == "restart" and card.json["status"] == "pending"
    assert card.json["requester"] == "web:bob" and card.json["may_decide"] is True

    decided = await console.call(
        "POST", f"/v1/approvals/{card.json['approval_id']}/decision", json={"decision": "reject", "comment": "freeze"}
    )
    assert decided.status == 202
    receipt = await alice.next("approval")
    assert receipt.json["approval_id"] == card.json["approval_id"]
    assert receipt.json["status"] == "rejected" and receipt.json["decided_by"] == "web:alice"

    # Dave may see neither (not an approver, not the requester): his next event is his own.
    mine = await console.call("POST", "/v1/threads", token=DAVE, json={"text": "/restart web production"})
    assert mine.status == 202
    assert (await dave.next("approval")).json["requester"] == "web:dave"


async def test_a_reconnect_with_last_event_id_gets_what_it_missed(console: Server, open_stream) -> None:
    first = await open_stream("/web/live")
    ready = await first.next()
    assert ready.id and "web=" in ready.id and "api=" in ready.id
    first.response.close()  # the page lost its connection...

    for text in ("/restart api production", "/deploy api 1.4.2 production"):
        assert (await console.call("POST", "/v1/threads", token=BOB, json={"text": text})).status == 202
    await console.harness.drain()

    again = await open_stream("/web/live", last_event_id=ready.id)  # ...and comes back where it was
    assert (await again.next()).json == {"resumed": True}
    tools = [(await again.next("approval")).json["tool"] for _ in range(2)]
    assert sorted(tools) == ["deploy", "restart"]

    fresh = await open_stream("/web/live")  # without an id: from now on only
    assert (await fresh.next()).json == {"resumed": False}
    assert (
        await console.call("POST", "/v1/threads", token=BOB, json={"text": "/restart web production"})
    ).status == 202
    assert (await fresh.next("approval")).json["args"] == {"service": "web", "environment": "production"}


async def test_the_chat_stream_carries_this_conversation_only(console: Server, open_stream) -> None:
    mine = await open_stream("/web/live?conversation=c-one")
    other = await open_stream("/web/live?conversation=c-two")
    await mine.next("ready")
    await other.next("ready")
    sent = await console.call("POST", "/web/messages", json={"conversation": "c-two", "text": "help"})
    assert sent.status == 202
    reply = await other.next("outbound")
    assert reply.json["kind"] == "reply" and "/deploy" in reply.json["text"]
    sent = await console.call("POST", "/web/messages", json={"conversation": "c-one", "text": "/list_services"})
    assert sent.status == 202
    assert (await mine.next("outbound")).json["conversation"] == "web:alice/c-one"


async def test_the_thread_stream_sends_each_new_event_once(console: Server, open_stream) -> None:
    launched = await console.call("POST", "/v1/threads", token=ALICE, json={"text": "/deploy api 1.4.2 production"})
    thread_id = launched.body["thread_id"]

    async def waiting() -> Any:
        reply = await console.call("GET", f"/v1/threads/{thread_id}")
        return reply.status == 200 and reply.body["thread"]["status"] == "awaiting_approval" and reply.body

    detail = await eventually(waiting, "the deploy to wait for approval")
    count = len(detail["events"])

    stream = await open_stream(f"/web/live/threads/{thread_id}?after={count}")
    assert (await stream.next()).event == "ready"
    approval_id = detail["thread"]["pending_approval"]
    approve = await console.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=BOB, json={"decision": "approve"}
    )
    assert approve.status == 403  # bob is not on call
    approve = await console.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=CAROL, json={"decision": "approve"}
    )
    assert approve.status == 202
    seen = []
    while not seen or seen[-1].json["type"] != "agent_reply":
        seen.append(await stream.next("event"))
    assert [int(event.id or 0) for event in seen] == list(range(count + 1, count + 1 + len(seen)))
    assert seen[0].json["type"] == "approval_decided"

    replay = await open_stream(f"/web/live/threads/{thread_id}", last_event_id=str(count))
    await replay.next("ready")
    assert (await replay.next("event")).json == seen[0].json


async def test_streams_refuse_what_the_api_refuses(console: Server, open_stream) -> None:
    anonymous = await console.call("GET", "/web/live", token=None)
    assert anonymous.status == 401
    bad = await console.call("GET", "/web/live", headers={"Last-Event-ID": "web=1-0,nonsense"})
    assert bad.status == 422 and "Last-Event-ID" in bad.message
    launched = await console.call("POST", "/v1/threads", token=ALICE, json={"text": "/list_services"})
    thread = f"/v1/threads/{launched.body['thread_id']}"

    async def stored() -> bool:
        return (await console.call("GET", thread)).status == 200

    await eventually(stored, "the thread to be stored")
    forbidden = await console.call("GET", f"/web/live/threads/{launched.body['thread_id']}", token=DAVE)
    assert forbidden.status == 403
    missing = await console.call("GET", "/web/live/threads/nope")
    assert missing.status == 404


async def test_an_idle_stream_is_kept_alive_with_pings(console: Server, open_stream, monkeypatch) -> None:
    monkeypatch.setattr(live, "PING_SECONDS", 0.2)
    stream = await open_stream("/web/live")
    await stream.next("ready")
    async with asyncio.timeout(DEADLINE_SECONDS):
        while not any(comment.startswith("ping") for comment in stream.comments):
            try:
                await asyncio.wait_for(stream.next(), 0.5)
            except TimeoutError:
                pass
    assert stream.comments
