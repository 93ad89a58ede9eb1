"""Standing grants from a Discord card: "Approve + grant 8h" where the policy allows a grant, approving the call
and giving its requester a grant a later matching call runs under without a card; no such button elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.domain import events as ev
from tests.discord.conftest import APPROVER, OUTSIDER, REQUESTER, MakeScene, Scene
from tests.discord.fake_discord import click, slash, text_channel, thread_channel

# The deploy of tests/test_grants.py: grants up to 8h for staging, any version; production gives none.
TOOLS = """
[tools.deploy]
description = 'Deploy a service version to an environment.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', '{version}', 'to', '{environment}']}
approval = {required=true, approvers=['group:oncall'], expires_in=600, grants={max_for='8h', when={environment=['staging']}, vary=['version']}}
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version', 'environment']
properties.service = {type='string'}
properties.version = {type='string'}
properties.environment = {type='string'}
"""


def staging(version: str) -> dict[str, str]:
    return {"service": "api", "version": version, "environment": "staging"}


async def _scene(make_scene: MakeScene, tmp_path: Path) -> Scene:
    (tmp_path / "grant-tools.toml").write_text(TOOLS)
    return await make_scene(BOT_TOOLS_FILE=str(tmp_path / "grant-tools.toml"))


def _cards(scene: Scene) -> list[dict[str, Any]]:
    return [c.response for c in scene.fake.find("POST", r"/channels/\d+/messages") if c.body.get("components")]


async def _card(scene: Scene, args: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """`/deploy` with `args`: the approval id and the card message."""
    await scene.feed(slash("deploy", args, who=REQUESTER, channel=text_channel()))
    card = _cards(scene)[-1]
    return card["components"][0]["components"][0]["custom_id"].split(":")[1], card


def _buttons(card: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The card's buttons, row by row: (label, custom_id)."""
    return [[(b["label"], b["custom_id"]) for b in row["components"]] for row in card["components"]]


async def _thread_events(scene: Scene, args: dict[str, str]) -> list[ev.Event]:
    """The events of the thread that called deploy with `args`."""
    for thread in await scene.threads():
        events = await scene.events(thread)
        if any(isinstance(e, ev.ToolCall) and e.args == args for e in events):
            return events
    raise AssertionError(f"no thread called deploy with {args}")


async def test_a_staging_card_offers_a_grant_and_its_click_gives_one(make_scene: MakeScene, tmp_path: Path) -> None:
    scene = await _scene(make_scene, tmp_path)
    approval_id, card = await _card(scene, staging("1.0"))
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    digest = record.digest[:12]
    assert _buttons(card) == [
        [
            ("Approve", f"appr:{approval_id}:approve:{digest}"),
            ("Reject", f"appr:{approval_id}:reject:{digest}"),
            ("Not now (30 min)", f"appr:{approval_id}:snooze:{digest}"),
            ("Edit", f"appr:{approval_id}:edit:{digest}"),
            ("Approve + grant 8h", f"appr:{approval_id}:grant:{digest}"),
        ]
    ], "five buttons: one row"

    press = click(card, f"appr:{approval_id}:grant:{digest}", who=APPROVER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press)
    [ack] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert ack.body["type"] == 6  # deferred update, as Approve
    [edit] = scene.fake.find("PATCH", rf"/channels/{card['channel_id']}/messages/{card['id']}")
    assert edit.body["components"] == [], "decided: no buttons left, the grant's neither"
    [grant] = await scene.harness.wiring.grants.listed()
    assert (grant.tool, grant.requester, grant.granted_by) == ("deploy", f"discord:{REQUESTER['id']}", "discord:111")
    assert (grant.expires_at - grant.created_at).total_seconds() == 8 * 3600, "0 asks for the policy's longest"
    first = await _thread_events(scene, staging("1.0"))
    assert "grant_given" in [e.type for e in first]
    assert any(isinstance(e, ev.ToolResult) and "deployed api 1.0 to staging" in e.output for e in first)

    await scene.feed(slash("deploy", staging("1.1"), who=REQUESTER, channel=text_channel()))  # `vary`: any version
    second = await _thread_events(scene, staging("1.1"))
    types = [e.type for e in second]
    assert "grant_used" in types and "approval_requested" not in types
    assert any(isinstance(e, ev.ToolResult) and "deployed api 1.1 to staging" in e.output for e in second)
    assert len(_cards(scene)) == 1, "no card for a call the grant covers"


async def test_a_click_by_someone_who_may_not_decide_gives_no_grant(make_scene: MakeScene, tmp_path: Path) -> None:
    scene = await _scene(make_scene, tmp_path)
    approval_id, card = await _card(scene, staging("1.0"))
    grant_button = _buttons(card)[0][-1][1]
    await scene.feed(click(card, grant_button, who=OUTSIDER, channel=thread_channel(card["channel_id"])))
    [note] = scene.fake.find("POST", r"/webhooks/999/[^/]+")
    assert note.body["flags"] == 64 and f"may not decide approval {approval_id}" in note.body["content"]
    assert await scene.harness.wiring.grants.listed() == []
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"


async def test_a_production_card_offers_no_grant(make_scene: MakeScene, tmp_path: Path) -> None:
    """Production is outside the policy's `grants.when`: the card is the usual four buttons."""
    scene = await _scene(make_scene, tmp_path)
    _, card = await _card(scene, {"service": "api", "version": "1.0", "environment": "production"})
    [row] = _buttons(card)
    assert [label for label, _ in row] == ["Approve", "Reject", "Not now (30 min)", "Edit"]
    assert not any(":grant" in custom_id for _, custom_id in row)
