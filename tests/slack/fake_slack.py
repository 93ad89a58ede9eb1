"""A local stand-in for slack.com: the Web API methods the channel calls, recorded, on 127.0.0.1:0.

It answers like Slack (`{"ok": true, ...}`), can answer the next call of a method with a 429
and `Retry-After`, and serves a Socket Mode WebSocket that sends envelopes and records acks.
Posted messages are kept, with their metadata, for `conversations.history` and
`conversations.replies` (metadata only with `include_all_metadata`, as Slack does); streamed
messages too (`chat.startStream` / `appendStream` / `stopStream`: text and chunks accumulate, and
a stream that stopped cannot be appended to), and `chat.update` changes what is kept. `refuse()`
answers a method's next call with an error, as a workspace without the feature or the scope does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

TEAM = "T1"
BOT_USER = "UBOT"
STATUS = ":hourglass_flowing_sand: "  # how the renderer marks the one progress message of a thread


def permalink(channel: str, ts: str) -> str:
    return f"https://ops.slack.test/archives/{channel}/p{ts.replace('.', '')}"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float  # time.monotonic() when it arrived
    token: str = ""  # the bearer token it was sent with
    result: dict[str, Any] = field(default_factory=dict)


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.failures: dict[str, list[int]] = {}  # method -> Retry-After seconds of each coming 429
        self.errors: dict[str, list[str]] = {}  # method -> Slack error codes of its coming calls
        self.acks: list[dict[str, Any]] = []  # Socket Mode acknowledgements from the app
        self.messages: list[dict[str, Any]] = []  # posted and not deleted: channel, ts, thread_ts, text, metadata
        self.envelopes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ts = itertools.count(1)
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/socket", self._socket)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    @property
    def api_url(self) -> str:
        return str(self.server.make_url("/api/"))

    async def start(self) -> None:
        await self.server.start_server()

    async def close(self) -> None:
        await self.server.close()

    def rate_limit(self, method: str, retry_after: int = 1) -> None:
        """Answer the next call of `method` with 429 and this Retry-After."""
        self.failures.setdefault(method, []).append(retry_after)

    def refuse(self, method: str, error: str) -> None:
        """Answer the next call of `method` with `{"ok": false, "error": error}`."""
        self.errors.setdefault(method, []).append(error)

    def called(self, method: str, **match: Any) -> list[Call]:
        """The calls of `method` whose arguments include `match`."""
        return [c for c in self.calls if c.method == method and all(c.args.get(k) == v for k, v in match.items())]

    def posts(self, **match: Any) -> list[Call]:
        """The messages posted that stay: every `chat.postMessage` but the progress (status) messages."""
        return [c for c in self.called("chat.postMessage", **match) if not c.args["text"].startswith(STATUS)]

    def statuses(self, **match: Any) -> list[Call]:
        """The progress (status) messages posted, each with its text and where it went."""
        return [c for c in self.called("chat.postMessage", **match) if c.args["text"].startswith(STATUS)]

    def said(self, **match: Any) -> list[dict[str, Any]]:
        """The messages kept (posted or streamed, as edited, not deleted) whose fields include `match`."""
        return [m for m in self.messages if all(m.get(k) == v for k, v in match.items())]

    def answers(self, **match: Any) -> list[dict[str, Any]]:
        """What stays in Slack but the bot's progress messages: what a person reads afterwards."""
        return [m for m in self.said(**match) if not m["text"].startswith(STATUS)]

    def status_calls(self) -> list[tuple[str, str, str]]:
        """Each `assistant.threads.setStatus`: (channel, thread_ts, status); "" clears it."""
        return [
            (c.args["channel_id"], c.args["thread_ts"], c.args["status"])
            for c in self.called("assistant.threads.setStatus")
        ]

    def deleted(self) -> list[tuple[str, str]]:
        """The (channel, ts) of every message deleted, in order."""
        return [(c.args["channel"], c.args["ts"]) for c in self.called("chat.delete")]

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            args: dict[str, Any] = await request.json()
        else:
            args = {**request.query, **(await request.post())}
        call = Call(method, args, time.monotonic(), request.headers.get("Authorization", "").removeprefix("Bearer "))
        self.calls.append(call)
        if self.failures.get(method):
            retry_after = self.failures[method].pop(0)
            body = {"ok": False, "error": "ratelimited"}
            return web.json_response(body, status=429, headers={"Retry-After": str(retry_after)})
        if self.errors.get(method):
            return web.json_response({"ok": False, "error": self.errors[method].pop(0)})
        call.result = self._answer(method, args)
        return web.json_response(call.result)

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        match method:
            case "auth.test":
                return {
                    "ok": True,
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "bot_id": "BBOT",
                    "team": "Ops",
                    "user": "bot",
                }
            case "chat.postMessage":
                ts = self._next_ts()
                message = {"ts": ts, "text": args["text"], "thread_ts": args.get("thread_ts", "")}
                if isinstance(metadata := args.get("metadata"), dict):
                    message["metadata"] = metadata
                self.messages.append({"channel": args["channel"], **message})
                return {"ok": True, "channel": args["channel"], "ts": ts, "message": {"ts": ts, "text": args["text"]}}
            case "chat.delete":
                self.messages = [m for m in self.messages if (m["channel"], m["ts"]) != (args["channel"], args["ts"])]
                return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
            case "conversations.history" | "conversations.replies":
                return {"ok": True, "messages": self._history(method, args), "has_more": False}
            case "chat.update":
                return self._update(args)
            case "chat.startStream" | "chat.appendStream" | "chat.stopStream":
                return self._stream(method, args)
            case "chat.postEphemeral" | "views.open":
                return {"ok": True, "message_ts": self._next_ts(), "view": {"id": "V1"}}
            case "chat.getPermalink":
                return {
                    "ok": True,
                    "channel": args["channel"],
                    "permalink": permalink(args["channel"], args["message_ts"]),
                }
            case "files.getUploadURLExternal":
                return {"ok": True, "upload_url": str(self.server.make_url("/upload/F1")), "file_id": "F1"}
            case "files.completeUploadExternal":
                return {"ok": True, "files": [{"id": "F1", "title": "output"}]}
            case "apps.connections.open":
                return {"ok": True, "url": str(self.server.make_url("/socket")).replace("http", "ws", 1)}
        return {"ok": True}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        for message in self.said(channel=args["channel"], ts=args["ts"]):
            message["text"] = args.get("text", message["text"])
            if isinstance(metadata := args.get("metadata"), dict):
                message["metadata"] = metadata
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text", "")}

    def _stream(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """A streamed message: started in a thread, appended to while it streams, stopped once (with metadata)."""
        chunks = list(args.get("chunks") or [])
        text = "".join(
            [str(args.get("markdown_text") or "")] + [c["text"] for c in chunks if c.get("type") == "markdown_text"]
        )
        if method == "chat.startStream":
            ts = self._next_ts()
            message = {"channel": args["channel"], "ts": ts, "text": text, "thread_ts": args["thread_ts"]}
            self.messages.append(message | {"chunks": chunks, "streaming": True})
            return {"ok": True, "channel": args["channel"], "ts": ts}
        found = self.said(channel=args["channel"], ts=args["ts"])
        if not found:
            return {"ok": False, "error": "message_not_found"}
        message = found[0]
        if not message.get("streaming"):
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message["text"] += text
        message["chunks"] += chunks
        if method == "chat.stopStream":
            message["streaming"] = False
            if isinstance(metadata := args.get("metadata"), dict):
                message["metadata"] = metadata
        return {"ok": True, "channel": args["channel"], "ts": args["ts"]}

    def _history(self, method: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        """A channel's top-level messages newest first, or a thread's root and replies oldest first."""
        if method == "conversations.history":
            found = [m for m in self.messages if m["channel"] == args["channel"] and not m["thread_ts"]][::-1]
        else:
            root = args["ts"]
            found = [
                m
                for m in self.messages
                if m["channel"] == args["channel"] and (m["ts"] == root or m["thread_ts"] == root)
            ]
        found = found[: int(args.get("limit", 100))]
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        return [{k: v for k, v in m.items() if k != "channel" and (with_metadata or k != "metadata")} for m in found]

    async def _upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append(
            Call("upload", {"file_id": request.match_info["file_id"], "size": len(body)}, time.monotonic())
        )
        return web.Response(text="OK")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, send each queued envelope, record the app's acks."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        sender = asyncio.create_task(self._send_envelopes(ws))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(message.data))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    async def _send_envelopes(self, ws: web.WebSocketResponse) -> None:
        while True:
            await ws.send_str(json.dumps(await self.envelopes.get()))
