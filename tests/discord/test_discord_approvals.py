"""Slash commands and approval buttons, end to end through the real worker."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import render as discord_render
from core.domain import events as ev
from tests.discord.conftest import APPROVER, OUTSIDER, REQUESTER, MakeScene, Scene
from tests.discord.fake_discord import (
    CHANNEL,
    click,
    message_create,
    modal_submit,
    slash,
    text_channel,
    thread_channel,
)

PRODUCTION = {"service": "api", "version": "1.4.2", "environment": "production"}


def deploys(tmp_path: Path) -> list[dict[str, Any]]:
    state = json.loads((tmp_path / "data" / "deployments.json").read_text())
    return [e for e in state["history"] if e["action"] == "deploy"]


async def tool_calls(scene: Scene) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return {
        thread.conversation: [(e.tool, e.args) for e in await scene.events(thread) if isinstance(e, ev.ToolCall)]
        for thread in await scene.threads()
    }


async def request_card(scene: Scene) -> tuple[str, dict[str, Any]]:
    """Ask for a production deploy with the slash command; return the approval id and the card message."""
    await scene.feed(slash("deploy", PRODUCTION, who=REQUESTER, channel=text_channel()))
    [card] = [c for c in scene.fake.find("POST", r"/channels/\d+/messages") if c.body.get("components")]
    approval_id = card.body["components"][0]["components"][0]["custom_id"].split(":")[1]
    return approval_id, card.response


async def test_a_typed_slash_command_makes_the_same_tool_call_as_the_text_command(scene: Scene) -> None:
    text = message_create("<@999> /deploy api 1.4.2 staging", author=REQUESTER, mention=True)
    await scene.feed(text)
    options = {"service": "api", "version": "1.4.2", "environment": "staging"}
    command = slash("deploy", options, who=REQUESTER, channel=text_channel())
    await scene.feed(command)
    [deferred] = scene.fake.find("POST", rf"/interactions/{command['id']}/[^/]+/callback")
    assert deferred.body["type"] == 5  # deferred channel message: "opsbot is thinking…"
    [echo] = scene.fake.find("PATCH", r"/webhooks/999/[^/]+/messages/@original")
    assert echo.body["content"] == ">>> /deploy service=api version=1.4.2 environment=staging"
    calls = await tool_calls(scene)
    by_text = calls[f"500/{CHANNEL}/{text['id']}"]
    by_slash = calls[f"500/{CHANNEL}/{echo.response['id']}"]
    assert by_text[0] == by_slash[0] == ("deploy", options)
    answer = scene.fake.find("POST", rf"/channels/{echo.response['id']}/messages")
    assert "api 1.4.2" in answer[0].body["content"] and "staging" in answer[0].body["content"]


async def test_a_gated_tool_posts_an_approval_card_with_two_buttons(scene: Scene) -> None:
    approval_id, card = await request_card(scene)
    buttons = card["components"][0]["components"]
    assert [(b["label"], b["custom_id"]) for b in buttons] == [
        ("Approve", f"appr:{approval_id}:approve"),
        ("Reject", f"appr:{approval_id}:reject"),
    ]
    content = card["content"]
    assert "`deploy`" in content and '"environment": "production"' in content and '"version": "1.4.2"' in content
    assert "**Requested by:** <@222>" in content and "**Who may approve:** `cli:operator`, <@111>" in content
    assert "command: /deploy service=api" in content and "**Expires:** <t:" in content


async def test_approve_click_edits_the_card_and_runs_the_tool_once(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    press = click(card, f"appr:{approval_id}:approve", who=APPROVER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press)
    [ack] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert ack.body["type"] == 6  # deferred update: no visible "thinking"
    [edit] = scene.fake.find("PATCH", rf"/channels/{card['channel_id']}/messages/{card['id']}")
    assert edit.body["components"] == []
    assert edit.body["content"].startswith(card["content"]) and "✅ **Approved** by <@111>" in edit.body["content"]
    assert [(d["service"], d["version"], d["by"]) for d in deploys(tmp_path)] == [("api", "1.4.2", "discord:222")]


async def test_a_double_click_decides_once(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, f"appr:{approval_id}:approve", who=APPROVER, channel=where))
    await scene.feed(click(card, f"appr:{approval_id}:approve", who=APPROVER, channel=where))
    assert len(deploys(tmp_path)) == 1
    assert len(scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")) == 1
    [note] = scene.fake.find("POST", r"/webhooks/999/[^/]+")
    assert note.body["flags"] == 64 and "already approved by discord:111" in note.body["content"]


async def test_an_unauthorised_click_gets_an_ephemeral_refusal(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    press = click(card, f"appr:{approval_id}:approve", who=OUTSIDER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press)
    [note] = scene.fake.find("POST", rf"/webhooks/999/{press['token']}")
    assert note.body["flags"] == 64  # ephemeral: only the clicker sees it
    assert "discord:333 may not decide approval" in note.body["content"]
    assert not scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"
    assert not (tmp_path / "data" / "deployments.json").exists() or deploys(tmp_path) == []


async def test_a_refusal_after_the_token_expired_arrives_as_a_dm(scene: Scene) -> None:
    approval_id, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    stale = click(card, f"appr:{approval_id}:approve", who=OUTSIDER, channel=where, age=timedelta(minutes=20))
    await scene.feed(stale)
    assert not scene.fake.find("POST", r"/webhooks/999/[^/]+")
    [opened] = scene.fake.find("POST", r"/users/@me/channels")
    assert opened.body == {"recipient_id": 333}
    [dm] = scene.fake.find("POST", rf"/channels/{opened.response['id']}/messages")
    assert "may not decide approval" in dm.body["content"]


async def test_a_refusal_whose_followup_is_rate_limited_arrives_as_a_dm(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discord.py sleeps out a webhook's 429 whatever its length; the renderer stops waiting and sends a DM."""
    monkeypatch.setattr(discord_render, "RATE_LIMIT_WAIT_SECONDS", 0.01)  # the SDK would sleep 600 s
    approval_id, card = await request_card(scene)
    scene.fake.followups_limited.append(600.0)
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, f"appr:{approval_id}:approve", who=OUTSIDER, channel=where))
    [opened] = scene.fake.find("POST", r"/users/@me/channels")
    [dm] = scene.fake.find("POST", rf"/channels/{opened.response['id']}/messages")
    assert "may not decide approval" in dm.body["content"]


async def test_reject_asks_for_a_reason_that_reaches_the_agent(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    press = click(card, f"appr:{approval_id}:reject", who=APPROVER, channel=where)
    await scene.feed(press, enqueues=False)
    [modal] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert modal.body["type"] == 9 and modal.body["data"]["custom_id"] == f"apprr:{approval_id}"
    await scene.feed(modal_submit(card, f"apprr:{approval_id}", "not during the freeze", who=APPROVER, channel=where))
    [thread] = await scene.threads()
    [error] = [e for e in await scene.events(thread) if isinstance(e, ev.ToolErrorEvent)]
    assert error.kind == "rejected" and "not during the freeze" in error.error
    [edit] = scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    assert "❌ **Rejected** by <@111>" in edit.body["content"] and "not during the freeze" in edit.body["content"]
    assert not (tmp_path / "data" / "deployments.json").exists() or deploys(tmp_path) == []


async def test_a_click_on_another_process_resolves_the_approval(scene: Scene, tmp_path: Path) -> None:
    """The process that posted the card is gone; a fresh client takes the click and edits over REST."""
    approval_id, card = await request_card(scene)
    await scene.channel.close()
    other = await scene.new_channel()
    press = click(card, f"appr:{approval_id}:approve", who=APPROVER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press, via=other)
    [edit] = scene.fake.find("PATCH", rf"/channels/{card['channel_id']}/messages/{card['id']}")
    assert "Approved" in edit.body["content"] and edit.body["components"] == []
    assert len(deploys(tmp_path)) == 1


async def test_cards_go_to_the_approval_channel_when_one_is_set(make_scene: MakeScene, tmp_path: Path) -> None:
    scene = await make_scene(DISCORD_APPROVAL_CHANNEL_ID="88")
    approval_id, card = await request_card(scene)
    assert card["channel_id"] == "88"
    [echo] = scene.fake.find("PATCH", r"/webhooks/999/[^/]+/messages/@original")
    [pointer] = scene.fake.find("POST", rf"/channels/{echo.response['id']}/messages")
    assert f"Approval `{approval_id}` for `deploy` is waiting in <#88>" in pointer.body["content"]
    await scene.feed(click(card, f"appr:{approval_id}:approve", who=APPROVER, channel=text_channel("88")))
    assert len(scene.fake.find("PATCH", rf"/channels/88/messages/{card['id']}")) == 1
    assert len(scene.fake.find("POST", r"/channels/88/messages")) == 1  # the card; no second receipt line
    assert len(deploys(tmp_path)) == 1


async def test_a_text_decision_elsewhere_edits_the_card_and_answers_there(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    await scene.feed(message_create(f"approve {approval_id}", author=APPROVER, channel_id="4343", guild=False))
    [edit] = scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    assert "✅ **Approved** by <@111>" in edit.body["content"]
    [line] = scene.fake.find("POST", r"/channels/4343/messages")
    assert "✅ **Approved** by <@111>" in line.body["content"]
    assert len(deploys(tmp_path)) == 1
