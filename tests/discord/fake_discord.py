"""A loopback Discord REST API (aiohttp, port 0) that records every call, and gateway payloads.

discord.py is pointed at it through `Route.BASE`; gateway events are fed to the real client's
parser (`client._connection.parse_*`), so the library's own dispatch runs.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
from aiohttp import web

BOT_ID = "999"
GUILD = "500"
CHANNEL = "77"
BOT_USER = {"id": BOT_ID, "username": "opsbot", "discriminator": "0", "global_name": None, "avatar": None, "bot": True}
MESSAGE_CONTENT_INTENT = 1 << 15
TIMESTAMP = "2026-11-23T14:00:00.000000+00:00"
NONCE_WINDOW_SECONDS = 300.0  # Discord checks a nonce "in the past few minutes"; the exact span is not documented


def snowflake(age: timedelta = timedelta(0)) -> str:
    """A fresh id whose timestamp is `age` ago (interaction tokens expire 15 minutes after it)."""
    return str(discord.utils.time_snowflake(datetime.now(UTC) - age) + next(_serial))


_serial = itertools.count(1)


def user(uid: str, name: str = "dana") -> dict[str, Any]:
    return {"id": uid, "username": name, "discriminator": "0", "global_name": name, "avatar": None}


@dataclass
class Call:
    method: str
    path: str  # after /api/v10, e.g. /channels/77/messages
    body: Any
    response: Any = None


def _json(obj: Any, status: int = 200) -> web.Response:
    # discord.py's json_or_text() wants exactly this content type.
    return web.Response(body=json.dumps(obj).encode(), status=status, headers={"Content-Type": "application/json"})


class FakeDiscord:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.threads: set[str] = set()
        self.forbidden: set[str] = set()  # channel ids where posting answers 403 Missing Permissions
        # For the coming message creates, in order: answer 429 with this Retry-After, or (None) make it.
        self.limited: list[float | None] = []
        self.banned: list[float] = []  # the same, answered by Cloudflare (no `Via`, HTML): discord.py does not retry
        self.followups_limited: list[float] = []  # Retry-After seconds of the coming followups answered 429
        self.made: list[dict[str, Any]] = []  # every message a create made, in order
        self.nonces: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}  # (channel, nonce) -> (when, message)
        self.clock: Callable[[], float] = time.monotonic  # a test may move time past NONCE_WINDOW_SECONDS
        self.acknowledged: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.base = ""
        self.gateway_url = ""
        self.frames: list[dict[str, Any]] = []  # what clients sent on the gateway
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self.privileged_intents = True  # False: refuse IDENTIFY with message content, as Discord does (4014)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base = f"http://{host}:{port}/api/v10"
        self.gateway_url = f"ws://{host}:{port}/gateway"
        return self.base

    async def stop(self) -> None:
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """HELLO, then READY after IDENTIFY; heartbeats are acknowledged. Text frames, no compression."""
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": 45_000}})
        async for message in socket:
            frame = json.loads(message.data)
            self.frames.append(frame)
            if frame["op"] == 1:
                await socket.send_json({"op": 11})
            elif frame["op"] == 2 and not self.privileged_intents and frame["d"]["intents"] & MESSAGE_CONTENT_INTENT:
                await socket.close(code=4014, message=b"Disallowed intent(s).")
            elif frame["op"] == 2:
                ready = {
                    "v": 10,
                    "user": BOT_USER,
                    "guilds": [],
                    "session_id": "s1",
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": BOT_ID, "flags": 0},
                }
                await self.dispatch("READY", ready)
        return socket

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event to every connected client."""
        for socket in self._sockets:
            self._seq += 1
            await socket.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    def find(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    def message(self, channel_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        body = body or {}
        return {
            "id": snowflake(),
            "channel_id": channel_id,
            "author": BOT_USER,
            "content": body.get("content") or "",
            "timestamp": TIMESTAMP,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": body.get("embeds", []),
            "pinned": False,
            "type": 0,
            "components": body.get("components", []),
            "flags": body.get("flags", 0),
        }

    async def _handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body = await request.json() if request.can_read_body else None
        call = Call(request.method, path, body)
        self.calls.append(call)
        response = self._answer(request.method, path, body or {})
        raw = response.body if isinstance(response.body, bytes) else b""
        call.response = json.loads(raw) if response.content_type == "application/json" else raw.decode()
        return response

    def _post_message(self, channel_id: str, body: dict[str, Any]) -> web.Response:
        if channel_id in self.forbidden:
            return _json({"code": 50013, "message": "Missing Permissions"}, 403)
        if self.limited and (retry_after := self.limited.pop(0)) is not None:
            return self._rate_limited(retry_after)
        if self.banned:
            headers = {"Retry-After": str(int(self.banned.pop(0))), "Content-Type": "text/html"}
            return web.Response(text="<html>error 1015: you are being rate limited</html>", status=429, headers=headers)
        now, nonce = self.clock(), str(body.get("nonce", ""))
        seen = self.nonces.get((channel_id, nonce))
        if nonce and body.get("enforce_nonce") and seen and now - seen[0] < NONCE_WINDOW_SECONDS:
            return _json(seen[1])  # as Discord does: the message made before, nothing new
        message = self.message(channel_id, body)
        self.made.append(message)
        if nonce:
            self.nonces[(channel_id, nonce)] = (now, message)
        return _json(message)

    def _followup(self, body: dict[str, Any]) -> web.Response:
        if self.followups_limited:
            return self._rate_limited(self.followups_limited.pop(0))
        return _json(self.message("0", body))

    @staticmethod
    def _rate_limited(retry_after: float) -> web.Response:
        limited = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        response = _json(limited, 429)
        response.headers["Via"] = "1.1 google"  # discord.py takes a 429 without it for a Cloudflare ban
        response.headers["Retry-After"] = str(int(retry_after))
        return response

    def messages_made(self, channel_id: str) -> list[str]:
        """The content of every message created in `channel_id` (a create answered from its nonce is not)."""
        return [m["content"] for m in self.made if m["channel_id"] == channel_id]

    def _answer(self, method: str, path: str, body: Any) -> web.Response:
        if (method, path) == ("GET", "/users/@me"):
            return _json(BOT_USER)
        if (method, path) == ("GET", "/oauth2/applications/@me"):
            return _json(
                {
                    "id": BOT_ID,
                    "name": "opsbot",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": user("1", "owner"),
                    "verify_key": "k",
                    "flags": 0,
                }
            )
        if m := re.fullmatch(r"/channels/(\d+)/messages", path):
            return self._post_message(m[1], body)
        if m := re.fullmatch(r"/channels/(\d+)/messages/(\d+)", path):
            return _json(self.message(m[1], body) | {"id": m[2]})
        if m := re.fullmatch(r"/channels/(\d+)/messages/(\d+)/threads", path):
            if m[2] in self.threads:
                return _json({"code": 160004, "message": "A thread has already been created for this message"}, 400)
            self.threads.add(m[2])
            return _json(
                {
                    "id": m[2],
                    "guild_id": GUILD,
                    "parent_id": m[1],
                    "owner_id": BOT_ID,
                    "type": 11,
                    "name": body.get("name", ""),
                    "thread_metadata": {
                        "archived": False,
                        "locked": False,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": TIMESTAMP,
                    },
                }
            )
        if m := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", path):
            if m[1] in self.acknowledged:
                return _json({"code": 40060, "message": "Interaction has already been acknowledged."}, 400)
            self.acknowledged.add(m[1])
            return _json({"interaction": {"id": m[1], "type": body.get("type", 0)}})
        if re.fullmatch(r"/webhooks/(\d+)/([^/]+)/messages/@original", path):
            return _json(self.message("0", body))
        if re.fullmatch(r"/webhooks/(\d+)/([^/]+)", path):
            return self._followup(body)
        if path == "/users/@me/channels":
            return _json({"id": snowflake(), "type": 1, "recipients": [user(str(body["recipient_id"]))]})
        if re.fullmatch(r"/applications/\d+(/guilds/\d+)?/commands", path):
            return _json(
                [
                    {
                        "id": snowflake(),
                        "application_id": BOT_ID,
                        "version": "1",
                        "type": 1,
                        "default_member_permissions": None,
                        **cmd,
                    }
                    for cmd in body
                ]
            )
        return _json({"code": 0, "message": f"the fake has no route {method} {path}"}, 404)


# --- gateway payloads ----------------------------------------------------------------------


def message_create(
    content: str, *, author: dict[str, Any], channel_id: str = CHANNEL, guild: bool = True, mention: bool = False
) -> dict[str, Any]:
    payload = {
        "id": snowflake(),
        "channel_id": channel_id,
        "author": author,
        "content": content,
        "timestamp": TIMESTAMP,
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [BOT_USER] if mention else [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
    }
    return payload | ({"guild_id": GUILD} if guild else {})


def _interaction(
    kind: int, who: dict[str, Any], data: dict[str, Any], channel: dict[str, Any], age: timedelta = timedelta(0)
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": snowflake(age),
        "application_id": BOT_ID,
        "type": kind,
        "token": f"tok{snowflake()}",
        "version": 1,
        "channel_id": channel["id"],
        "channel": channel,
        "data": data,
        "locale": "en-US",
        "app_permissions": "0",
        "attachment_size_limit": 0,
        "authorizing_integration_owners": {},
        "entitlements": [],
    }
    if channel["type"] == 1:
        return payload | {"user": who}
    member = {"user": who, "roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
    return payload | {"guild_id": GUILD, "member": member}


def text_channel(channel_id: str = CHANNEL) -> dict[str, Any]:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": GUILD,
        "name": "ops",
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def thread_channel(thread_id: str, parent_id: str = CHANNEL) -> dict[str, Any]:
    return {
        "id": thread_id,
        "type": 11,
        "guild_id": GUILD,
        "parent_id": parent_id,
        "owner_id": BOT_ID,
        "name": "request",
        "rate_limit_per_user": 0,
        "flags": 0,
        "message_count": 1,
        "member_count": 1,
        "thread_metadata": {
            "archived": False,
            "locked": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": TIMESTAMP,
        },
    }


def dm_channel(channel_id: str) -> dict[str, Any]:
    return {"id": channel_id, "type": 1}


def slash(name: str, options: dict[str, Any], *, who: dict[str, Any], channel: dict[str, Any]) -> dict[str, Any]:
    types = {str: 3, bool: 5, int: 4, float: 10}
    opts = [{"name": k, "type": types[type(v)], "value": v} for k, v in options.items()]
    data = {"id": snowflake(), "name": name, "type": 1, "options": opts}
    return _interaction(2, who, data, channel)


def click(
    card: dict[str, Any], custom_id: str, *, who: dict[str, Any], channel: dict[str, Any], age: timedelta = timedelta(0)
) -> dict[str, Any]:
    """A button press on `card` (a message payload whose components hold the button, as Discord sends)."""
    data = {"custom_id": custom_id, "component_type": 2}
    return _interaction(3, who, data, channel, age) | {"message": card}


def modal_submit(
    card: dict[str, Any], custom_id: str, reason: str, *, who: dict[str, Any], channel: dict[str, Any]
) -> dict[str, Any]:
    field = {"type": 4, "custom_id": "reason", "value": reason}
    data = {"custom_id": custom_id, "components": [{"type": 1, "components": [field]}]}
    return _interaction(5, who, data, channel) | {"message": card}


def modal_fields(
    card: dict[str, Any], custom_id: str, values: dict[str, str], *, who: dict[str, Any], channel: dict[str, Any]
) -> dict[str, Any]:
    """A modal submitted with these text inputs' values (custom_id -> value), one input per row."""
    rows = [{"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]} for key, value in values.items()]
    return _interaction(5, who, {"custom_id": custom_id, "components": rows}, channel) | {"message": card}


def select(
    card: dict[str, Any], custom_id: str, values: list[str], *, who: dict[str, Any], channel: dict[str, Any]
) -> dict[str, Any]:
    """A choice from a select menu on `card`."""
    data = {"custom_id": custom_id, "component_type": 3, "values": values}
    return _interaction(3, who, data, channel) | {"message": card}
