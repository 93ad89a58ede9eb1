"""Socket Mode: the same listeners, fed Socket Mode payloads; and `run()` over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from slack_bolt.async_app import AsyncBoltRequest

from adapters.slack.blocks import APPROVE
from tests.eventually import eventually
from tests.slack.conftest import APPROVER, MakeSlack, SlackKit, block_actions, event_envelope
from tests.slack.fake_slack import BOT_USER

MENTION = {
    "type": "app_mention",
    "user": "U1",
    "text": f"<@{BOT_USER}> /deploy api 1.4.2 production",
    "ts": "1700000001.000100",
    "channel": "C1",
}


async def test_socket_mode_payloads_go_through_the_same_listeners(slack: SlackKit) -> None:
    app = slack.channel.app
    response = await app.async_dispatch(AsyncBoltRequest(body=event_envelope(MENTION, "Ev1"), mode="socket_mode"))
    assert response.status == 200
    retry = AsyncBoltRequest(
        body=event_envelope(MENTION, "Ev1"), mode="socket_mode", headers={"x-slack-retry-num": "1"}
    )
    assert (await app.async_dispatch(retry)).status == 200
    await slack.received(2)
    await slack.settle(lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")))
    card = next(c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args)
    assert card.args["thread_ts"] == MENTION["ts"]
    payload = json.loads(parse_qs(block_actions(card, APPROVE, APPROVER, "1700000600.000001"))["payload"][0])
    assert (await app.async_dispatch(AsyncBoltRequest(body=payload, mode="socket_mode"))).status == 200
    await slack.settle(lambda: bool(slack.fake.called("chat.update")))
    assert slack.channel.stats == {"published": 2, "duplicate": 1}
    assert f"Approved by <@{APPROVER}>" in slack.fake.called("chat.update")[0].args["text"]


async def test_run_receives_over_the_websocket_and_renders_the_outbox(make_slack: MakeSlack) -> None:
    slack = await make_slack(SLACK_APP_TOKEN="xapp-test-token")
    stop = asyncio.Event()
    running = asyncio.create_task(slack.channel.run(stop))
    envelope = {
        "envelope_id": "env-1",
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": event_envelope(MENTION, "Ev1"),
    }
    await slack.fake.envelopes.put(envelope)
    await eventually(lambda: {"envelope_id": "env-1"} in slack.fake.acks, "the envelope acknowledged")
    await slack.received(1)
    await slack.harness.drain()
    await eventually(
        lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")), "the card, rendered by run()"
    )
    stop.set()
    await asyncio.wait_for(running, 5)
    (opened,) = slack.fake.called("apps.connections.open")
    assert opened.token == "xapp-test-token"
    assert {c.token for c in slack.fake.calls if c.method.startswith("chat.")} == {"xoxb-test-token"}
