"""Edit before approve from a Slack card: the Edit button's dialog, prefilled with the call; its submission
runs the edited call, and a value that breaks the tool's schema is shown under its field, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from adapters.slack.blocks import APPROVE, EDIT, REJECT, SNOOZE
from core.domain import events as ev
from tests.slack.conftest import APPROVER, TEAM, MakeSlack, SlackKit
from tests.slack.fake_slack import Call

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


async def _slack(make_slack: MakeSlack, tmp_path: Path) -> SlackKit:
    (tmp_path / "edit-tools.toml").write_text(TOOLS)
    return await make_slack(BOT_TOOLS_FILE=str(tmp_path / "edit-tools.toml"))


async def _card(slack: SlackKit) -> tuple[Call, str]:
    await slack.command("/deploy", "api 1.2 staging")
    await slack.settle(lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")))
    card = next(c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args)
    (pending,) = await slack.harness.wiring.store.pending_approvals()
    return card, pending.approval_id


async def _dialog(slack: SlackKit, card: Call) -> Call:
    assert await slack.click(card, EDIT, user=APPROVER) == 200
    await slack.settle(lambda: bool(slack.fake.called("views.open")))
    (dialog,) = slack.fake.called("views.open")
    return dialog


def _inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block for block in view["blocks"] if block["type"] == "input"}


async def _submit(slack: SlackKit, dialog: Call, user: str = APPROVER, **typed: str) -> tuple[int, str]:
    """Submit the dialog as Slack does: each field as shown, but for those `typed` (a select's choice by value)."""
    view = dialog.args["view"]
    values: dict[str, Any] = {}
    for block_id, block in _inputs(view).items():
        element = block["element"]
        text = typed.get(block_id.removeprefix("arg:"), element.get("initial_value"))
        if element["type"] == "static_select":
            chosen = typed.get(block_id.removeprefix("arg:"))
            option = next((o for o in element["options"] if o["value"] == chosen), element.get("initial_option"))
            state = {"type": "static_select", "selected_option": option}
        else:
            state = {"type": "plain_text_input", "value": text or None}  # Slack sends an empty field as null
        values[block_id] = {element["action_id"]: state}
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "trigger-edit",
        "view": {**view, "id": "VEDIT", "state": {"values": values}},
    }
    return await slack.post("payload=" + quote(json.dumps(payload)), "application/x-www-form-urlencoded")


async def test_the_card_has_an_edit_button_with_the_id_and_digest(make_slack: MakeSlack, tmp_path: Path) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack)
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    [actions] = [block for block in card.args["blocks"] if block["type"] == "actions"]
    value = f"{approval_id} {record.digest[:12]}"
    assert [(b["action_id"], b["value"]) for b in actions["elements"]] == [
        (APPROVE, value),
        (REJECT, value),
        (SNOOZE, value),
        (EDIT, value),
    ]


async def test_edit_opens_a_dialog_prefilled_with_the_calls_arguments(make_slack: MakeSlack, tmp_path: Path) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack)
    dialog = await _dialog(slack, card)
    view = dialog.args["view"]
    assert dialog.args["trigger_id"].startswith("trigger-") and view["callback_id"] == "approval.edit_args"
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    meta = json.loads(view["private_metadata"])
    assert meta["approval_id"] == approval_id and meta["digest"] == record.digest[:12]
    assert meta["thread_id"] == record.thread_id
    fields = _inputs(view)
    assert list(fields) == ["arg:service", "arg:version", "arg:environment", "arg:replicas", "comment"]
    assert fields["arg:service"]["element"]["initial_value"] == "api" and not fields["arg:service"]["optional"]
    assert fields["arg:version"]["element"]["initial_value"] == "1.2"
    assert fields["arg:version"]["hint"]["text"] == "major.minor"
    environment = fields["arg:environment"]["element"]
    assert environment["type"] == "static_select" and environment["initial_option"]["value"] == "staging"
    assert [o["value"] for o in environment["options"]] == ["staging", "production"]
    assert "initial_value" not in fields["arg:replicas"]["element"] and fields["arg:replicas"]["optional"]
    assert fields["comment"]["optional"]


async def test_a_submitted_edit_runs_the_edited_call(make_slack: MakeSlack, tmp_path: Path) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack)
    dialog = await _dialog(slack, card)
    assert await _submit(slack, dialog, version="1.3", replicas="2", comment="checked the changelog") == (200, "")
    await slack.settle(lambda: any(m["text"] == "deployed api 1.3 to staging" for m in slack.fake.answers()))
    events = await slack.events()
    [edit] = [e for e in events if isinstance(e, ev.ArgumentsEdited)]
    assert edit.by == f"slack:{TEAM}:{APPROVER}" and edit.channel == "slack"
    assert edit.after == {"service": "api", "version": "1.3", "environment": "staging", "replicas": 2}
    [decided] = [e for e in events if isinstance(e, ev.ApprovalDecided)]
    assert decided.comment == "checked the changelog" and decided.approval_id != approval_id
    old = await slack.harness.wiring.store.get_approval(approval_id)
    assert old is not None and old.status == "edited"


async def test_an_emptied_optional_field_removes_the_argument_and_a_select_changes_it(
    make_slack: MakeSlack, tmp_path: Path
) -> None:
    slack = await _slack(make_slack, tmp_path)
    await slack.command("/deploy", "service=api version=1.2 environment=staging replicas=3")
    await slack.settle(lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")))
    card = next(c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args)
    dialog = await _dialog(slack, card)
    assert _inputs(dialog.args["view"])["arg:replicas"]["element"]["initial_value"] == "3"
    await _submit(slack, dialog, replicas="", environment="production")
    await slack.settle(lambda: any(m["text"] == "deployed api 1.2 to production" for m in slack.fake.answers()))
    [edit] = [e for e in await slack.events() if isinstance(e, ev.ArgumentsEdited)]
    assert edit.after == {"service": "api", "version": "1.2", "environment": "production"}


async def test_a_value_that_breaks_the_schema_is_shown_in_the_dialog_and_nothing_is_sent(
    make_slack: MakeSlack, tmp_path: Path
) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack)
    dialog = await _dialog(slack, card)
    published = slack.channel.stats["published"]
    status, body = await _submit(slack, dialog, version="latest", replicas="many")
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {
        "arg:version": "version: 'latest' does not match '^[0-9]+[.][0-9]+$'",
        "arg:replicas": "replicas must be integer, got 'many'",
    }
    status, body = await _submit(slack, dialog, replicas="0")
    assert json.loads(body)["errors"] == {"arg:replicas": "replicas: 0 is less than the minimum of 1"}
    assert slack.channel.stats["published"] == published and slack.channel.stats["invalid"] == 2
    await slack.harness.drain()
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending" and record.args["version"] == "1.2"
    assert not [e for e in await slack.events() if isinstance(e, ev.ArgumentsEdited | ev.ToolStarted)]


async def test_edit_by_someone_who_may_not_approve_opens_no_dialog(make_slack: MakeSlack, tmp_path: Path) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack)
    await slack.click(card, EDIT, user="U2")
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    (refusal,) = slack.fake.called("chat.postEphemeral")
    assert refusal.args["user"] == "U2" and f"<@U2> may not decide approval {approval_id}" in refusal.args["text"]
    assert slack.fake.called("views.open") == []
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"
