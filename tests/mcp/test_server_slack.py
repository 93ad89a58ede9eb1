"""A `request_approval` through `/mcp` shown as a Block Kit card in Slack (the fake Web API) and approved
there by a click, the waiting MCP caller getting the decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.slack.blocks import APPROVE
from adapters.slack.channel import SlackChannel
from tests.conftest import Harness
from tests.eventually import eventually
from tests.mcp.server_fixtures import CI, http_session, running_bot, tools_file
from tests.mcp.test_server_http import structured
from tests.slack.conftest import APPROVER, SECRET, SlackKit
from tests.slack.fake_slack import TEAM, FakeSlack


@pytest.fixture
async def slack(embedded_redis: str, make_harness: Any, tmp_path: Path) -> AsyncIterator[SlackKit]:
    fake = FakeSlack()
    await fake.start()
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    env = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "SLACK_APPROVAL_CHANNEL": "C1",  # where Slack shows approvals of threads it did not start
        "BOT_TOOLS_FILE": str(tools_file(tmp_path, channel="slack", conversation="C1")),
    }
    harness: Harness = make_harness(client, **env)
    wiring = harness.wiring
    assert wiring.settings.slack is not None
    wiring.tools.groups["oncall"].append(f"slack:{TEAM}:{APPROVER}")  # on call in Slack, beside the file's
    channel = SlackChannel(wiring.settings.slack, bus=wiring.bus, store=wiring.store, tools=wiring.tools)
    kit = SlackKit(harness, channel, fake)
    await kit.start()
    yield kit
    await kit.stop()
    await client.aclose()
    await fake.close()


async def test_a_request_is_a_slack_card_and_a_click_there_answers_the_mcp_caller(slack: SlackKit) -> None:
    async with running_bot(slack.harness, wait_seconds=30) as bot, http_session(bot.url, CI) as session:
        call = asyncio.create_task(
            session.call_tool(
                "request_approval",
                {"action": "deploy", "arguments": {"service": "api"}, "reason": "the 1.4 release"},
            )
        )

        async def card() -> Any:
            await slack.deliver()
            return next((c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args), None)

        posted = await eventually(card, "the approval card posted in Slack")
        assert posted.args["channel"] == "C1" and "mcp:deploy" in str(posted.args["blocks"])
        assert await slack.click(posted, APPROVE, user=APPROVER) == 200
        decision = structured(await call)
        assert decision["status"] == "approved" and decision["decided_by"] == f"slack:{TEAM}:{APPROVER}"

        async def edited() -> bool:
            await slack.deliver()
            return bool(slack.fake.called("chat.update"))

        await eventually(edited, "the card edited to show the decision")
