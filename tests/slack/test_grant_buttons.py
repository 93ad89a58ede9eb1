"""Standing grants from a Slack card: "Approve + grant 8h" where the policy allows a grant, approving the call
and giving its requester a grant a later matching call runs under without a card; no such button elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.slack import blocks
from adapters.slack.blocks import APPROVE, EDIT, GRANT, REJECT, SNOOZE
from core import ApprovalRequest
from core.domain import events as ev
from tests.slack.conftest import APPROVER, TEAM, MakeSlack, SlackKit
from tests.slack.fake_slack import Call

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


async def _slack(make_slack: MakeSlack, tmp_path: Path) -> SlackKit:
    (tmp_path / "grant-tools.toml").write_text(TOOLS)
    return await make_slack(BOT_TOOLS_FILE=str(tmp_path / "grant-tools.toml"))


def _cards(slack: SlackKit) -> list[Call]:
    return [c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args]


async def _card(slack: SlackKit, text: str) -> tuple[Call, str]:
    """`/deploy <text>`: the new card the fake recorded and its approval id."""
    before = len(_cards(slack))
    await slack.command("/deploy", text)
    await slack.settle(lambda: len(_cards(slack)) > before)
    (pending,) = await slack.harness.wiring.store.pending_approvals()
    return _cards(slack)[-1], pending.approval_id


def _actions(card_blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for block in card_blocks if block["type"] == "actions"]


def _buttons(card_blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["text"]["text"]) for block in _actions(card_blocks) for e in block["elements"]]


async def _thread_events(slack: SlackKit, text: str) -> list[ev.Event]:
    """The events of the thread whose request was `/deploy <text>`."""
    for state in await slack.harness.wiring.store.list_threads():
        events = await slack.harness.wiring.store.load_events(state.thread_id)
        if any(isinstance(e, ev.UserMessage) and text in e.text for e in events):
            return events
    raise AssertionError(f"no thread asked for /deploy {text}")


async def test_a_staging_card_offers_a_grant_and_its_click_gives_one(make_slack: MakeSlack, tmp_path: Path) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack, "api 1.0 staging")
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    value = f"{approval_id} {record.digest[:12]}"
    [actions] = _actions(card.args["blocks"])
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        (APPROVE, value),
        (REJECT, value),
        (SNOOZE, value),
        (EDIT, value),
        (GRANT, value),
    ]
    assert actions["elements"][-1]["text"]["text"] == "Approve + grant 8h"

    assert await slack.click(card, GRANT, user=APPROVER) == 200
    await slack.settle(lambda: any(m["text"] == "deployed api 1.0 to staging" for m in slack.fake.answers()))
    [grant] = await slack.harness.wiring.grants.listed()
    assert (grant.tool, grant.requester, grant.granted_by) == ("deploy", f"slack:{TEAM}:U1", f"slack:{TEAM}:{APPROVER}")
    assert (grant.expires_at - grant.created_at).total_seconds() == 8 * 3600, "0 asks for the policy's longest"
    assert "grant_given" in [e.type for e in await _thread_events(slack, "api 1.0 staging")]
    await slack.settle(lambda: bool(slack.fake.called("chat.update", ts=card.result["ts"])))
    assert _actions(slack.fake.called("chat.update", ts=card.result["ts"])[-1].args["blocks"]) == [], "decided"

    await slack.command("/deploy", "api 1.1 staging")  # another version: `vary` leaves it open
    await slack.settle(lambda: any(m["text"] == "deployed api 1.1 to staging" for m in slack.fake.answers()))
    types = [e.type for e in await _thread_events(slack, "api 1.1 staging")]
    assert "grant_used" in types and "approval_requested" not in types
    assert len(_cards(slack)) == 1, "no card for a call the grant covers"


async def test_a_click_by_someone_who_may_not_decide_gives_no_grant(make_slack: MakeSlack, tmp_path: Path) -> None:
    slack = await _slack(make_slack, tmp_path)
    card, approval_id = await _card(slack, "api 1.0 staging")
    await slack.click(card, GRANT, user="U2")  # on no list
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    assert f"<@U2> may not decide approval {approval_id}" in slack.fake.called("chat.postEphemeral")[0].args["text"]
    assert await slack.harness.wiring.grants.listed() == []
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"


async def test_a_production_card_offers_no_grant(make_slack: MakeSlack, tmp_path: Path) -> None:
    """Production is outside the policy's `grants.when`: the card is the usual four buttons."""
    slack = await _slack(make_slack, tmp_path)
    card, _ = await _card(slack, "api 1.0 production")
    assert [action for action, _ in _buttons(card.args["blocks"])] == [APPROVE, REJECT, SNOOZE, EDIT]
    assert "grant" not in str(card.args["blocks"]).lower()


def _request(grant_max: int) -> ApprovalRequest:
    return ApprovalRequest.model_validate(
        {
            "id": "o1",
            "thread_id": "t1",
            "channel": "slack",
            "conversation": "T1/C1/1.0",
            "approval_id": "a1",
            "tool": "deploy",
            "args": {"service": "api"},
            "reason": "",
            "requester": f"slack:{TEAM}:U1",
            "approvers": [f"slack:{TEAM}:{APPROVER}"],
            "expires_at": "2026-11-23T14:10:00+00:00",
            "grant_max": grant_max,
        }
    )


def test_the_grant_button_goes_to_a_second_actions_block_past_five(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack takes at most five elements in an actions block: a sixth button starts another."""
    monkeypatch.setattr(blocks, "MAX_BUTTONS", 4)  # as if the card had one button more than today
    _, card_blocks = blocks.approval_card(_request(5400))
    assert [[e["action_id"] for e in block["elements"]] for block in _actions(card_blocks)] == [
        [APPROVE, REJECT, SNOOZE, EDIT],
        [GRANT],
    ]
    assert len({block["block_id"] for block in _actions(card_blocks)}) == 2
    assert ("approval.approve_grant", "Approve + grant 1h30m") in _buttons(card_blocks)
