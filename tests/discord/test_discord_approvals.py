"""Slash commands and approval buttons, end to end through the real worker."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import render as discord_render
from core.domain import events as ev
from tests.conftest import quorum_tools
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


def embed(message: dict[str, Any]) -> dict[str, Any]:
    [card] = message["embeds"]
    return card


def fields(card: dict[str, Any]) -> dict[str, str]:
    return {field["name"]: field["value"] for field in card.get("fields", [])}


def no_raw_identities(text: str) -> bool:
    """Nothing core writes for people shows raw: no markers, no `discord:123`, no ISO time."""
    return not re.search(r"<who:|<when:|discord:\d|\d{4}-\d\d-\d\dT\d\d", text)


async def request_card(scene: Scene) -> tuple[str, dict[str, Any]]:
    """Ask for a production deploy with the slash command; return the approval id and the card message."""
    await scene.feed(slash("deploy", PRODUCTION, who=REQUESTER, channel=text_channel()))
    [card] = [c for c in scene.fake.find("POST", r"/channels/\d+/messages") if c.body.get("components")]
    approval_id = card.body["components"][0]["components"][0]["custom_id"].split(":")[1]
    return approval_id, card.response


def button_id(card: dict[str, Any], decision: str) -> str:
    """The custom_id of the card's Approve or Reject button: what a click on it sends."""
    buttons = card["components"][0]["components"]
    return str(next(b["custom_id"] for b in buttons if b["custom_id"].split(":")[2] == decision))


def digest_of(card: dict[str, Any]) -> str:
    return button_id(card, "approve").split(":")[3]


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


async def test_a_gated_tool_posts_an_approval_card_with_its_buttons(scene: Scene) -> None:
    approval_id, card = await request_card(scene)
    buttons = card["components"][0]["components"]
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    digest = record.digest[:12]  # the card's version of the call: a click on an older one is refused
    assert [(b["label"], b["custom_id"]) for b in buttons] == [
        ("Approve", f"appr:{approval_id}:approve:{digest}"),
        ("Reject", f"appr:{approval_id}:reject:{digest}"),
        ("Not now (30 min)", f"appr:{approval_id}:snooze:{digest}"),
        ("Edit", f"appr:{approval_id}:edit:{digest}"),
    ]
    shown = embed(card)
    got = fields(shown)
    assert shown["title"] == "Approval needed: deploy"
    assert shown["description"] == "command: /deploy service=api version=1.4.2 environment=production"
    assert '"environment": "production"' in got["Arguments"] and '"version": "1.4.2"' in got["Arguments"]
    assert got["Arguments"].startswith("```json\n")
    assert got["Requested by"] == "<@222>"
    # cli:operator is on call too, but Discord cannot show them: counted, not listed.
    assert got["Who may approve"] == "<@111> and 1 on another channel"
    assert re.fullmatch(r"<t:(\d+):R> \(<t:\1:f>\)", got["Expires"])
    [echo] = scene.fake.find("PATCH", r"/webhooks/999/[^/]+/messages/@original")
    request_link = f"https://discord.com/channels/500/{CHANNEL}/{echo.response['id']}"
    assert shown["url"] == request_link and got["Request"] == f"[Jump to the request]({request_link})"
    assert f"approval {approval_id}" in shown["footer"]["text"]
    # The approvers Discord can reach are pinged by the content line; nobody else may be.
    assert card["content"] == "<@111>: your approval is needed"
    [post] = [c for c in scene.fake.find("POST", r"/channels/\d+/messages") if c.body.get("components")]
    assert post.body["allowed_mentions"] == {"parse": [], "users": [111]}
    assert no_raw_identities(json.dumps(shown))


async def test_approve_click_edits_the_card_and_runs_the_tool_once(scene: Scene, tmp_path: Path) -> None:
    _, card = await request_card(scene)
    press = click(card, button_id(card, "approve"), who=APPROVER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press)
    [ack] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert ack.body["type"] == 6  # deferred update: no visible "thinking"
    [edit] = scene.fake.find("PATCH", rf"/channels/{card['channel_id']}/messages/{card['id']}")
    assert edit.body["components"] == [] and edit.body["content"] is None  # no buttons, no pings left
    record = embed(edit.body)
    assert record["title"] == "Approved: deploy" and record["url"] == embed(card)["url"]
    assert re.fullmatch(r"✅ <@111> approved `deploy` <t:(\d+):f> \(<t:\1:R>\)", record["description"])
    assert fields(record) == {"Arguments": "`environment=production service=api version=1.4.2`"}
    assert "Expires" not in json.dumps(record) and "may approve" not in json.dumps(record)
    assert [(d["service"], d["version"], d["by"]) for d in deploys(tmp_path)] == [("api", "1.4.2", "discord:222")]


async def test_not_now_snoozes_the_card_in_place_and_only_for_an_approver(scene: Scene) -> None:
    approval_id, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, button_id(card, "snooze"), who=OUTSIDER, channel=where))
    [note] = scene.fake.find("POST", r"/webhooks/999/[^/]+")
    assert note.body["flags"] == 64 and "may not snooze" in note.body["content"]
    await scene.feed(click(card, button_id(card, "snooze"), who=APPROVER, channel=where))
    [edit] = scene.fake.find("PATCH", rf"/channels/{card['channel_id']}/messages/{card['id']}")
    assert re.fullmatch(r"by <@111> until <t:\d+:f>", fields(embed(edit.body))["Snoozed"])
    assert edit.body["components"], "still open: the buttons stay"
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending" and record.snoozed_by == "discord:111"


async def test_a_double_click_decides_once(scene: Scene, tmp_path: Path) -> None:
    _, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, button_id(card, "approve"), who=APPROVER, channel=where))
    await scene.feed(click(card, button_id(card, "approve"), who=APPROVER, channel=where))
    assert len(deploys(tmp_path)) == 1
    assert len(scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")) == 1
    [note] = scene.fake.find("POST", r"/webhooks/999/[^/]+")
    assert note.body["flags"] == 64  # ephemeral
    assert re.search(r"already approved by <@111> at <t:\d+:f>; nothing changed", note.body["content"])
    assert no_raw_identities(note.body["content"])


async def test_an_unauthorised_click_gets_an_ephemeral_refusal(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    press = click(card, button_id(card, "approve"), who=OUTSIDER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press)
    [note] = scene.fake.find("POST", rf"/webhooks/999/{press['token']}")
    assert note.body["flags"] == 64  # ephemeral: only the clicker sees it
    assert note.body["content"].startswith(f"⚠️ <@333> may not decide approval {approval_id}")
    assert "allowed approvers: the oncall group (operator, <@111>)" in note.body["content"]
    assert no_raw_identities(note.body["content"])
    assert not scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"
    assert not (tmp_path / "data" / "deployments.json").exists() or deploys(tmp_path) == []


async def test_a_refusal_after_the_token_expired_arrives_as_a_dm(scene: Scene) -> None:
    _, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    stale = click(card, button_id(card, "approve"), who=OUTSIDER, channel=where, age=timedelta(minutes=20))
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
    _, card = await request_card(scene)
    scene.fake.followups_limited.append(600.0)
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, button_id(card, "approve"), who=OUTSIDER, channel=where))
    [opened] = scene.fake.find("POST", r"/users/@me/channels")
    [dm] = scene.fake.find("POST", rf"/channels/{opened.response['id']}/messages")
    assert "may not decide approval" in dm.body["content"]


async def test_reject_asks_for_a_reason_that_reaches_the_agent(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    press = click(card, button_id(card, "reject"), who=APPROVER, channel=where)
    await scene.feed(press, enqueues=False)
    [modal] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert modal.body["type"] == 9 and modal.body["data"]["custom_id"] == f"apprr:{approval_id}:{digest_of(card)}"
    await scene.feed(
        modal_submit(
            card, f"apprr:{approval_id}:{digest_of(card)}", "not during the freeze", who=APPROVER, channel=where
        )
    )
    [thread] = await scene.threads()
    [error] = [e for e in await scene.events(thread) if isinstance(e, ev.ToolErrorEvent)]
    assert error.kind == "rejected" and "not during the freeze" in error.error
    [edit] = scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    record = embed(edit.body)
    assert record["title"] == "Rejected: deploy"
    assert re.fullmatch(
        r"❌ <@111> rejected `deploy` <t:\d+:f> \(<t:\d+:R>\): not during the freeze", record["description"]
    )
    assert not (tmp_path / "data" / "deployments.json").exists() or deploys(tmp_path) == []


async def test_a_click_on_another_process_resolves_the_approval(scene: Scene, tmp_path: Path) -> None:
    """The process that posted the card is gone; a fresh client takes the click and edits over REST."""
    _, card = await request_card(scene)
    await scene.channel.close()
    other = await scene.new_channel()
    press = click(card, button_id(card, "approve"), who=APPROVER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press, via=other)
    [edit] = scene.fake.find("PATCH", rf"/channels/{card['channel_id']}/messages/{card['id']}")
    assert embed(edit.body)["title"] == "Approved: deploy" and edit.body["components"] == []
    assert len(deploys(tmp_path)) == 1


async def test_cards_go_to_the_approval_channel_when_one_is_set(make_scene: MakeScene, tmp_path: Path) -> None:
    scene = await make_scene(DISCORD_APPROVAL_CHANNEL_ID="88")
    approval_id, card = await request_card(scene)
    assert card["channel_id"] == "88"
    [echo] = scene.fake.find("PATCH", r"/webhooks/999/[^/]+/messages/@original")
    [pointer] = scene.fake.find("POST", rf"/channels/{echo.response['id']}/messages")
    assert f"Approval `{approval_id}` for `deploy` is waiting in <#88>" in pointer.body["content"]
    await scene.feed(click(card, button_id(card, "approve"), who=APPROVER, channel=text_channel("88")))
    assert len(scene.fake.find("PATCH", rf"/channels/88/messages/{card['id']}")) == 1
    assert len(scene.fake.find("POST", r"/channels/88/messages")) == 1  # the card; no second receipt line
    assert len(deploys(tmp_path)) == 1


async def test_a_text_decision_elsewhere_edits_the_card_and_answers_there(scene: Scene, tmp_path: Path) -> None:
    approval_id, card = await request_card(scene)
    await scene.feed(message_create(f"approve {approval_id}", author=APPROVER, channel_id="4343", guild=False))
    [edit] = scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    assert embed(edit.body)["description"].startswith("✅ <@111> approved `deploy` <t:")
    [line] = scene.fake.find("POST", r"/channels/4343/messages")
    assert line.body["content"].startswith("✅ <@111> approved `deploy` <t:")
    assert len(deploys(tmp_path)) == 1


async def test_a_rejection_is_not_reported_as_a_failure(scene: Scene) -> None:
    approval_id, card = await request_card(scene)
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, button_id(card, "reject"), who=APPROVER, channel=where), enqueues=False)
    await scene.feed(
        modal_submit(card, f"apprr:{approval_id}:{digest_of(card)}", "not now", who=APPROVER, channel=where)
    )
    answers = [c.body["content"] or "" for c in scene.fake.find("POST", r"/channels/\d+/messages")]
    assert any("rejected" in answer for answer in answers)
    assert not any("failed:" in answer for answer in answers)  # a rejection is a decision, not a failure


async def test_a_card_for_a_thread_elsewhere_links_to_the_console_and_lists_whom_discord_can_reach(
    make_scene: MakeScene, tmp_path: Path
) -> None:
    """A terminal thread's approval notified to Discord: the link is the console's, the approvers Discord's."""
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\noncall = ['cli:operator', 'discord:111', 'email:erin@example.com']\n"
        "[tools.wipe]\ndescription = 'Wipe a cache.'\nexecutor = {kind='command', argv=['echo', 'wiped']}\n"
        "approval = {required=true, approvers=['group:oncall'], notify=['discord']}\n"
    )
    scene = await make_scene(
        DISCORD_APPROVAL_CHANNEL_ID="88", BOT_TOOLS_FILE=str(tools), BOT_PUBLIC_URL="https://ops.example.com"
    )
    await scene.harness.wiring.bus.publish(scene.harness.trigger("/wipe", sender="cli:sam"))
    await scene.harness.drain()
    await scene.render()
    [card] = scene.fake.find("POST", r"/channels/88/messages")
    shown = embed(card.response)
    [thread] = await scene.threads()
    assert shown["url"] == f"https://ops.example.com/#thread/{thread.thread_id}"
    assert fields(shown)["Requested by"] == "sam"
    assert fields(shown)["Who may approve"] == "<@111> and 2 on other channels"
    assert card.body["content"] == "<@111>: your approval is needed"


async def test_a_quorum_of_two_edits_the_card_in_place(make_scene: MakeScene, tmp_path: Path) -> None:
    """olga's approval edits the card to "1 of 2" with its buttons; mallory's (on call too) completes it."""
    oncall = f"discord:{APPROVER['id']},discord:{OUTSIDER['id']}"
    scene = await make_scene(BOT_TOOLS_FILE=quorum_tools(tmp_path, 2), BOT_GROUP_ONCALL=oncall)
    _, card = await request_card(scene)
    assert fields(embed(card))["Approvals"] == "0 of 2"
    where = thread_channel(card["channel_id"])
    await scene.feed(click(card, button_id(card, "approve"), who=APPROVER, channel=where))
    [edit] = scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")
    assert fields(embed(edit.body))["Approvals"] == "1 of 2: <@111>" and edit.body["components"], "buttons kept"
    assert not (tmp_path / "data" / "deployments.json").exists()
    await scene.feed(click(card, button_id(card, "approve"), who=OUTSIDER, channel=where))
    assert [(d["service"], d["by"]) for d in deploys(tmp_path)] == [("api", "discord:222")]
    decided = scene.fake.find("PATCH", rf"/channels/\d+/messages/{card['id']}")[-1]
    assert embed(decided.body)["title"] == "Approved: deploy" and not decided.body.get("components")


async def test_the_card_shows_the_tools_preview(scene: Scene) -> None:
    """The deploy tool's dry run is a field of the card, as a code block (`core.runtime.previews`)."""
    _, card = await request_card(scene)
    preview = fields(embed(card))["Preview"]
    assert preview.startswith("```\nplan: deploy api 1.4.2 to production\n  version: 1.0.0 -> 1.4.2\n")
    assert preview.endswith("open incidents: none\n```")
