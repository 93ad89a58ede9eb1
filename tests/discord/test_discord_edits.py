"""Edit before approve from a Discord card: the Edit button's modal, prefilled with the call; its submission
runs the edited call, and a value that breaks the tool's schema is answered to the editor alone, nothing sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.domain import events as ev
from tests.discord.conftest import APPROVER, OUTSIDER, REQUESTER, MakeScene, Scene
from tests.discord.fake_discord import click, modal_fields, slash, text_channel, thread_channel

# The tools of tests/test_edits.py: a version pattern, an enum, an optional integer; every deploy gated.
TOOLS = """
[tools.deploy]
description = 'Deploy a version of a service to an environment.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', '{version}', 'to', '{environment}']}
approval = {required=true, approvers=['group:oncall']}
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version', 'environment']
additionalProperties = false
properties.service = {type='string'}
properties.version = {type='string', pattern='^[0-9]+[.][0-9]+$', description='major.minor'}
properties.environment = {type='string', enum=['staging', 'production']}
properties.replicas = {type='integer', minimum=1}
"""
STAGING = {"service": "api", "version": "1.2", "environment": "staging"}


async def _card(make_scene: MakeScene, tmp_path: Path) -> tuple[Scene, str, dict[str, Any]]:
    (tmp_path / "edit-tools.toml").write_text(TOOLS)
    scene = await make_scene(BOT_TOOLS_FILE=str(tmp_path / "edit-tools.toml"))
    await scene.feed(slash("deploy", STAGING, who=REQUESTER, channel=text_channel()))
    [card] = [c for c in scene.fake.find("POST", r"/channels/\d+/messages") if c.body.get("components")]
    approval_id = card.body["components"][0]["components"][0]["custom_id"].split(":")[1]
    return scene, approval_id, card.response


def _edit_button(card: dict[str, Any]) -> str:
    return str(next(b["custom_id"] for b in card["components"][0]["components"] if b["label"] == "Edit"))


def _inputs(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The modal's text inputs by custom_id (in rows, or in labels)."""
    found: dict[str, dict[str, Any]] = {}
    for row in modal["components"]:
        for item in row.get("components", []) + ([row["component"]] if "component" in row else []):
            found[item["custom_id"]] = item | ({"label": row["label"]} if "label" in row else {})
    return found


async def _modal(scene: Scene, card: dict[str, Any], who: dict[str, Any] = APPROVER) -> dict[str, Any]:
    press = click(card, _edit_button(card), who=who, channel=thread_channel(card["channel_id"]))
    await scene.feed(press, enqueues=False)
    [answer] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert answer.body["type"] == 9, answer.body  # a modal
    return dict(answer.body["data"])


async def _submit(scene: Scene, card: dict[str, Any], modal: dict[str, Any], enqueues: bool, **typed: str) -> str:
    """Submit the modal as shown but for the `typed` fields; the id of the submission's interaction."""
    values = {key: item.get("value") or "" for key, item in _inputs(modal).items()}
    values |= {f"arg:{name}" if name != "comment" else name: value for name, value in typed.items()}
    submit = modal_fields(card, modal["custom_id"], values, who=APPROVER, channel=thread_channel(card["channel_id"]))
    await scene.feed(submit, enqueues=enqueues)
    return str(submit["id"])


async def test_edit_opens_a_modal_prefilled_with_the_calls_arguments(make_scene: MakeScene, tmp_path: Path) -> None:
    scene, approval_id, card = await _card(make_scene, tmp_path)
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    assert _edit_button(card) == f"appr:{approval_id}:edit:{record.digest[:12]}"
    modal = await _modal(scene, card)
    assert modal["custom_id"] == f"appre:{approval_id}:{record.digest[:12]}"
    fields = _inputs(modal)
    assert list(fields) == ["arg:service", "arg:version", "arg:environment", "arg:replicas", "comment"]
    assert [fields[f"arg:{name}"].get("value") for name in STAGING] == ["api", "1.2", "staging"]
    assert fields["arg:version"]["placeholder"] == "major.minor"
    assert fields["arg:environment"]["placeholder"] == "one of: staging, production"
    assert not fields["arg:replicas"].get("value") and fields["arg:replicas"]["required"] is False
    assert fields["arg:service"]["required"] is True and fields["comment"]["required"] is False


async def test_a_submitted_edit_runs_the_edited_call(make_scene: MakeScene, tmp_path: Path) -> None:
    scene, approval_id, card = await _card(make_scene, tmp_path)
    modal = await _modal(scene, card)
    submitted = await _submit(scene, card, modal, enqueues=True, version="1.3", replicas="2", comment="changelog ok")
    [ack] = scene.fake.find("POST", rf"/interactions/{submitted}/[^/]+/callback")
    assert ack.body["type"] == 6  # deferred: the thread shows what happens
    said = [c.body.get("content") or "" for c in scene.fake.find("POST", r"/channels/\d+/messages")]
    assert "deployed api 1.3 to staging" in said
    [thread] = await scene.threads()
    events = await scene.events(thread)
    [edit] = [e for e in events if isinstance(e, ev.ArgumentsEdited)]
    assert edit.by == f"discord:{APPROVER['id']}" and edit.channel == "discord"
    assert edit.after == {**STAGING, "version": "1.3", "replicas": 2}
    [decided] = [e for e in events if isinstance(e, ev.ApprovalDecided)]
    assert decided.comment == "changelog ok" and decided.approval_id != approval_id
    old = await scene.harness.wiring.store.get_approval(approval_id)
    assert old is not None and old.status == "edited"


async def test_a_value_that_breaks_the_schema_is_answered_ephemerally_and_nothing_is_sent(
    make_scene: MakeScene, tmp_path: Path
) -> None:
    scene, approval_id, card = await _card(make_scene, tmp_path)
    modal = await _modal(scene, card)
    before = await scene.inbox_size()
    submitted = await _submit(scene, card, modal, enqueues=False, version="latest", replicas="0")
    [answer] = scene.fake.find("POST", rf"/interactions/{submitted}/[^/]+/callback")
    assert answer.body["type"] == 4 and answer.body["data"]["flags"] == 64  # a message only the editor sees
    text = answer.body["data"]["content"]
    assert "- version: 'latest' does not match '^[0-9]+[.][0-9]+$'" in text
    assert "- replicas: 0 is less than the minimum of 1" in text
    assert f"Approval {approval_id} still waits" in text
    assert await scene.inbox_size() == before, "nothing published"
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending" and record.args == STAGING
    [thread] = await scene.threads()
    assert not [e for e in await scene.events(thread) if isinstance(e, ev.ArgumentsEdited | ev.ToolStarted)]


async def test_edit_by_someone_who_may_not_approve_opens_no_modal(make_scene: MakeScene, tmp_path: Path) -> None:
    scene, approval_id, card = await _card(make_scene, tmp_path)
    press = click(card, _edit_button(card), who=OUTSIDER, channel=thread_channel(card["channel_id"]))
    await scene.feed(press)
    [ack] = scene.fake.find("POST", rf"/interactions/{press['id']}/[^/]+/callback")
    assert ack.body["type"] == 6
    [note] = scene.fake.find("POST", rf"/webhooks/999/{press['token']}")
    assert note.body["flags"] == 64 and f"<@333> may not decide approval {approval_id}" in note.body["content"]
    record = await scene.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"
