"""People and times in core's text: markers core writes, each channel renders natively."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import redis.asyncio as aioredis

from adapters.terminal import render
from core import people
from core.domain import events as ev
from core.model.llm import Choice
from tests.conftest import Harness, ScriptedModel

AT = datetime(2026, 12, 2, 15, 49, 11, 189419, tzinfo=UTC)


def test_markers_render_with_each_channels_forms_and_plainly_by_default() -> None:
    text = f"already approved by {people.who('slack:T0PEER001:U0ONCALL1')} at {people.when(AT)}; nothing changed"
    assert text == "already approved by <who:slack:T0PEER001:U0ONCALL1> at <when:2026-12-02T15:49:11Z>; nothing changed"
    slack = people.render(text, lambda i: f"<@{people.display(i)}>", lambda at: f"<!date^{int(at.timestamp())}>")
    assert (
        slack
        == f"already approved by <@U0ONCALL1> at <!date^{int(AT.replace(microsecond=0).timestamp())}>; nothing changed"
    )
    assert people.plain(text) == "already approved by U0ONCALL1 at 2026-12-02 15:49 UTC; nothing changed"
    assert people.plain("no markers < here >") == "no markers < here >"


def test_a_time_in_another_zone_is_the_same_instant() -> None:
    local = AT.astimezone(timezone(timedelta(hours=-5)))
    assert people.when(local) == people.when(AT) == "<when:2026-12-02T15:49:11Z>"


def test_names_and_mentions_per_platform() -> None:
    assert [people.display(i) for i in ("email:alice@example.com", "cli:operator", "api:ci-bot", "group:oncall")] == [
        "alice@example.com",
        "operator",
        "ci-bot",
        "the oncall group",
    ]
    assert people.mention("slack:T1:U2", "slack") == "<@U2>"
    assert people.mention("discord:1002", "discord") == "<@1002>"
    assert people.mention("slack:T1:U2", "email") == "U2", "another platform's mention would not render"
    assert people.reachable(["slack:T1:U2", "cli:operator", "group:oncall", "email:a@b.c"], "slack") == [
        "slack:T1:U2",
        "group:oncall",
    ]


async def test_the_card_says_why_and_links_to_the_thread_and_the_terminal_shows_no_raw_identities(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    h = make_harness(fake_redis, BOT_PUBLIC_URL="https://ops.example.com/")
    await h.say("/restart api production")
    card = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    assert card.reason == "command: /restart api production"
    assert card.thread_url == f"https://ops.example.com/#thread/{card.thread_id}"

    await h.say(f"approve {card.approval_id}", sender="cli:mallory")
    refusal = [o for o in await h.outbox() if isinstance(o, ev.Notice) and o.to == "cli:mallory"][-1]
    shown = render(refusal)
    assert shown.startswith("bot> [warning] mallory may not decide approval")
    assert "<who:" not in shown and "cli:" not in shown


async def test_a_card_without_a_stated_reason_quotes_the_request_with_secrets_redacted(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    secret = "hunter2-deploy-token"
    deploy = Choice(tool="deploy", args={"service": "api", "version": "1.4.2", "environment": "production"})
    h = make_harness(fake_redis, ScriptedModel([deploy]), DEPLOY_TOKEN=secret)  # the model gives no reason
    await h.say(f"ship api 1.4.2 to production, the token is {secret}")

    shown = await h.outbox()
    card = next((o for o in shown if isinstance(o, ev.ApprovalRequest)), None)
    assert card is not None, shown
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None
    assert card.reason.startswith("asked: ship api 1.4.2 to production") and record.reason == card.reason
    assert secret not in card.reason and "DEPLOY_TOKEN" in card.reason, card.reason
