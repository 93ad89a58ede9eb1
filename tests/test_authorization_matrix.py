"""Who may decide, identity by channel: every channel's decision path ends in the same deterministic check.

Each channel's adapter turns a button, an email reply, a console click or a typed `approve` into a
`DecisionTrigger` with the platform's identity; these tests drive that trigger from each channel with
that channel's identity format, for the requester (separation of duties), someone outside the
approver group, and an on-call approver. The channels' own tests drive the same paths through the
real adapters (tests/slack/test_approvals.py, tests/discord, tests/email/test_email_flow.py,
tests/e2e/test_chat_process.py, tests/web/test_web_channel.py, tests/web/test_access.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain import people
from core.domain.ids import new_id
from tests.conftest import Harness

# channel -> (requester, outsider, approver), each in the channel's identity format; the requester and
# the approver are both on call, so the requester is refused for separation of duties alone.
PEOPLE = {
    "cli": ("cli:operator", "cli:mallory", "cli:dana"),
    "slack": ("slack:T1:U0REQ", "slack:T1:U0OUT", "slack:T1:U0ONCALL"),
    "discord": ("discord:1001", "discord:1002", "discord:1003"),
    "email": ("email:sam@example.com", "email:eve@example.net", "email:dana@example.com"),
    "web": ("web:bob", "web:dave", "web:alice"),
    "api": ("web:bob", "web:dave", "web:alice"),
}
ONCALL = ",".join(person for people in PEOPLE.values() for person in (people[0], people[2]))
DEPLOY = "/deploy api 1.4.2 production"


async def requested(h: Harness, channel: str) -> tuple[str, str]:
    """A production deploy asked for on `channel` by its requester: (conversation, approval id)."""
    conversation = f"{channel}/{new_id()}"
    requester = PEOPLE[channel][0]
    trigger = ev.MessageTrigger(id=new_id(), channel=channel, conversation=conversation, sender=requester, text=DEPLOY)
    await h.wiring.bus.publish(trigger)
    await h.drain()
    (record,) = [r for r in await h.wiring.store.pending_approvals() if r.requester == requester]
    return conversation, record.approval_id


async def notices(h: Harness, channel: str) -> list[str]:
    _, items = await h.wiring.bus.follow(channel, "0-0", block_ms=0)
    return [o.text for o in items if isinstance(o, ev.Notice)]


@pytest.mark.parametrize("channel", list(PEOPLE))
@pytest.mark.parametrize(
    ("who", "allowed", "reason"),
    [
        (0, False, "you requested it"),
        (1, False, "you are not one of its allowed approvers"),
        (2, True, ""),
    ],
    ids=["requester", "outsider", "approver"],
)
async def test_who_may_decide_a_production_deploy_from_each_channel(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness], channel: str, who: int, allowed: bool, reason: str
) -> None:
    h = make_harness(fake_redis, BOT_GROUP_ONCALL=ONCALL)
    conversation, approval_id = await requested(h, channel)
    decider = PEOPLE[channel][who]
    decision = ev.DecisionTrigger(
        id=new_id(),
        channel=channel,
        conversation=conversation,
        sender=decider,
        approval_id=approval_id,
        decision="approve",
    )
    await h.wiring.bus.publish(decision)
    await h.drain()

    record = await h.wiring.store.get_approval(approval_id)
    assert record is not None
    if allowed:
        assert (record.status, record.decided_by) == ("approved", decider)
        return
    assert record.status == "pending", f"{decider} must not decide it"
    said = await notices(h, channel)
    assert any(
        f"{people.who(decider)} may not decide approval {approval_id}" in text and reason in text for text in said
    ), said


@pytest.mark.parametrize("channel", ["slack", "discord", "email"])
async def test_a_chat_channel_can_be_limited_to_who_may_start_threads(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness], tmp_path, channel: str
) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        f"[groups]\noncall = ['{PEOPLE[channel][2]}']\n[access]\nstart = {{ {channel} = ['group:oncall'] }}\n"
        "[tools.status]\ndescription = 'Status.'\nexecutor = {kind='command', argv=['echo', 'all good']}\n"
    )
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(tools), BOT_GROUP_ONCALL="")
    for sender in (PEOPLE[channel][1], PEOPLE[channel][2]):
        trigger = ev.MessageTrigger(
            id=new_id(), channel=channel, conversation=f"{channel}/{sender}", sender=sender, text="/status"
        )
        await h.wiring.bus.publish(trigger)
    await h.drain()

    threads = await h.wiring.store.list_threads()
    assert [t.requester for t in threads] == [PEOPLE[channel][2]], "only the listed one started a thread"
    said = await notices(h, channel)
    assert any(f"{people.who(PEOPLE[channel][1])} may not start threads on {channel}" in text for text in said), said
