"""The Slack channel under test: the real Bolt app served by uvicorn on 127.0.0.1:0, its Web API
calls going to `FakeSlack`, a real core (worker and outbox) on Redis, and signed requests.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
import redis.asyncio as aioredis
import uvicorn
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette

from adapters.slack.channel import SlackChannel
from config.settings import Settings
from core import ToolRegistry, load_tools, new_id
from core.domain import events as ev
from tests.conftest import Harness, ScriptedModel
from tests.eventually import eventually
from tests.slack.fake_slack import BOT_USER, TEAM, Call, FakeSlack

SECRET = "test-signing-secret-0123456789abcdef"
# On call: U1, who asks in these tests, and APPROVER, who decides (the shipped policies need an approver
# other than the requester). U2 is on no list.
APPROVER = "U3"


@dataclass
class SlackKit:
    """One bot: helpers to talk to it the way Slack does, and to let it work until something is true."""

    harness: Harness
    channel: SlackChannel
    fake: FakeSlack
    url: str = ""
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    session: aiohttp.ClientSession | None = None
    clicks: int = field(default=0)

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        app = Starlette(routes=self.channel.routes())
        config = uvicorn.Config(app, lifespan="off", ws="none", http="h11", log_level="warning")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.session = aiohttp.ClientSession()
        await eventually(lambda: self.server is not None and self.server.started, "the app's server to start")

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task

    # --- requests as Slack sends them -------------------------------------------------------

    async def post(
        self, body: str, content_type: str, headers: dict[str, str] | None = None, secret: str = SECRET
    ) -> tuple[int, str]:
        ts = str(int(time.time()))
        signed = {
            "content-type": content_type,
            "x-slack-request-timestamp": ts,
            "x-slack-signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or "",
        }
        assert self.session is not None
        async with self.session.post(
            f"{self.url}/slack/events", data=body.encode(), headers=signed | (headers or {})
        ) as r:
            return r.status, await r.text()

    async def event(self, event: dict[str, Any], event_id: str | None = None, retry: int | None = None) -> int:
        envelope = event_envelope(event, event_id)
        headers = {"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"} if retry else {}
        status, _ = await self.post(json.dumps(envelope), "application/json", headers)
        return status

    async def command(self, command: str, text: str, user: str = "U1", channel: str = "C1") -> tuple[int, str]:
        return await self.post(
            command_form(self.fake, command, text, user, channel), "application/x-www-form-urlencoded"
        )

    async def click(
        self, card: Call, action_id: str, user: str = "U1", action_ts: str | None = None, selected: str | None = None
    ) -> int:
        """Click a button of the card the fake recorded (or choose `selected` in its select menu); the same
        `action_ts` replays a click."""
        self.clicks += 1
        status, _ = await self.post(
            block_actions(card, action_id, user, action_ts or f"1700000500.{self.clicks:06d}", selected),
            "application/x-www-form-urlencoded",
        )
        return status

    async def submit_reason(self, dialog: Call, reason: str, user: str = "U1") -> int:
        view = {
            "id": "V1",
            "type": "modal",
            "callback_id": dialog.args["view"]["callback_id"],
            "private_metadata": dialog.args["view"]["private_metadata"],
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
        }
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": "A1",
            "token": "legacy",
            "trigger_id": "trigger-view",
            "view": view,
        }
        status, _ = await self.post("payload=" + quote(json.dumps(payload)), "application/x-www-form-urlencoded")
        return status

    # --- letting the bot work ---------------------------------------------------------------

    async def deliver(self, by: SlackChannel | None = None) -> int:
        """Render what is in the `slack` outbox now, as `bus.deliver` would (`by` another process)."""
        bus = self.harness.wiring.bus
        items = await bus.receive("slack", "test-renderer", block_ms=0)
        for entry_id, outbound in items:
            await (by or self.channel).render(outbound)
            await bus.done("slack", entry_id)
        return len(items)

    async def settle(self, check: Callable[[], bool], what: str = "the Slack calls awaited") -> None:
        """Run the worker and render the outbox until `check()` holds (listeners run after Slack's ack)."""

        async def step() -> bool:
            await self.harness.drain()
            await self.deliver()
            return check()

        await eventually(step, what)

    async def received(self, count: int) -> None:
        """Wait until the listeners have handled `count` deliveries, whatever they made of them."""
        await eventually(lambda: sum(self.channel.stats.values()) >= count, f"{count} deliveries handled")

    async def events(self) -> list[ev.Event]:
        (state,) = await self.harness.wiring.store.list_threads()
        return await self.harness.wiring.store.load_events(state.thread_id)


def event_envelope(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{new_id()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


def block_actions(card: Call, action_id: str, user: str, action_ts: str, selected: str | None = None) -> str:
    """The block_actions payload of a click on `action_id` of the card (a select: choosing `selected`)."""
    block, element = next(
        (block, element)
        for block in card.args["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action_id
    )
    action = {**element, "block_id": block.get("block_id", "approval"), "action_ts": action_ts}
    if selected is not None:
        action["selected_option"] = next(option for option in element["options"] if option["value"] == selected)
        del action["options"]
    message = {"type": "message", "ts": card.result["ts"], "text": card.args["text"], "blocks": card.args["blocks"]}
    if card.args.get("thread_ts"):
        message["thread_ts"] = card.args["thread_ts"]
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "ops"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": f"trigger-{action_ts}",
        "container": {"type": "message", "message_ts": card.result["ts"], "channel_id": card.args["channel"]},
        "channel": {"id": card.args["channel"], "name": "ops"},
        "message": message,
        "actions": [action],
    }
    return "payload=" + quote(json.dumps(payload))


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.close()


MakeSlack = Callable[..., Awaitable[SlackKit]]


@pytest.fixture
async def make_slack(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness], fake_slack: FakeSlack
) -> AsyncIterator[MakeSlack]:
    """`await make_slack(redis=None, model=None, serve=True, **env)`: a bot serving HTTP; U1, APPROVER on call."""
    kits: list[SlackKit] = []

    async def factory(
        redis: aioredis.Redis | None = None, model: ScriptedModel | None = None, serve: bool = True, **env: str
    ) -> SlackKit:
        base = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": fake_slack.api_url,
            "BOT_GROUP_ONCALL": f"slack:{TEAM}:U1,slack:{TEAM}:{APPROVER}",
        }
        harness = make_harness(redis if redis is not None else fake_redis, model, **(base | env))
        wiring = harness.wiring
        assert wiring.settings.slack is not None
        channel = SlackChannel(wiring.settings.slack, bus=wiring.bus, store=wiring.store, tools=wiring.tools)
        kit = SlackKit(harness, channel, fake_slack)
        kits.append(kit)
        if serve:
            await kit.start()
        return kit

    yield factory
    for kit in kits:
        await kit.stop()


@pytest.fixture
async def slack(make_slack: MakeSlack) -> SlackKit:
    return await make_slack()


@pytest.fixture
def slack_tools() -> ToolRegistry:
    return load_tools(Settings.model_validate({}).tools_file)


def signed_headers(body: str, content_type: str, secret: str = SECRET) -> dict[str, str]:
    """The headers Slack sends with `body`: its content type, a fresh timestamp and the v0 signature."""
    ts = str(int(time.time()))
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": ts,
        "x-slack-signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or "",
    }


def command_form(fake: FakeSlack, command: str, text: str, user: str = "U1", channel: str = "C1") -> str:
    """A slash command's form body, as Slack posts it to /slack/events."""
    form = {
        "token": "legacy",
        "team_id": TEAM,
        "channel_id": channel,
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": str(fake.server.make_url("/response")),
        "trigger_id": f"trigger-{new_id()}",
    }
    return urlencode(form)
