"""Approval cards and buttons: the card, approve once, refusals, the reject dialog, the approval channel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapters.slack.blocks import APPROVE, EDIT, REJECT, SNOOZE
from adapters.slack.channel import SlackChannel
from core.domain import events as ev
from tests.conftest import quorum_tools
from tests.slack.conftest import APPROVER, TEAM, MakeSlack, SlackKit
from tests.slack.fake_slack import Call, permalink

DEPLOY_ARGS = {"service": "api", "version": "1.4.2", "environment": "production"}


async def request_deploy(slack: SlackKit) -> tuple[Call, str]:
    """`/deploy api 1.4.2 production`: the card the fake recorded and its approval id."""
    await slack.command("/deploy", "api 1.4.2 production")
    await slack.settle(lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")))
    card = next(c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args)
    (pending,) = await slack.harness.wiring.store.pending_approvals()
    return card, pending.approval_id


def buttons(card_blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [element for block in card_blocks if block["type"] == "actions" for element in block["elements"]]


def deploys(tmp_path: Path) -> list[dict[str, str]]:
    state = json.loads((tmp_path / "data" / "deployments.json").read_text())
    return [entry for entry in state["history"] if entry["action"] == "deploy"]


async def test_gated_command_posts_an_approval_card_whose_buttons_hold_the_id_and_digest(slack: SlackKit) -> None:
    card, approval_id = await request_deploy(slack)
    opener = slack.fake.called("chat.postMessage")[0]
    assert card.args["channel"] == "C1" and card.args["thread_ts"] == opener.result["ts"]
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None
    value = f"{approval_id} {record.digest[:12]}"  # nothing else: the call itself is read from Redis
    assert [(b["action_id"], b["value"]) for b in buttons(card.args["blocks"])] == [
        (APPROVE, value),
        (REJECT, value),
        (SNOOZE, value),
        (EDIT, value),
    ]
    assert f"digest `{record.digest[:12]}`" in json.dumps(card.args["blocks"])
    shown = json.dumps(card.args["blocks"])
    assert json.dumps(json.dumps(DEPLOY_ARGS, indent=2, sort_keys=True))[1:-1] in shown  # the exact arguments
    assert "`deploy`" in shown and "<@U1>" in shown and "command: /deploy api 1.4.2 production" in shown
    assert "<!date^" in shown  # the expiry, in each reader's time zone
    # Only the approvers Slack can show (not the requester: no self-approval); the operator is counted, not named.
    assert f"*Who may approve*\\n<@{APPROVER}> and 1 approver on another channel" in shown and "operator" not in shown
    # The fallback text (notifications, screen readers) is a sentence, not a JSON dump.
    assert card.args["text"] == (
        "<@U1> asks to run deploy (service=api, version=1.4.2, environment=production) "
        f"and needs an approval ({approval_id})."
    )


async def test_approve_click_edits_the_card_and_runs_the_tool_once(
    redis_client: aioredis.Redis, make_slack: MakeSlack, tmp_path: Path
) -> None:
    slack = await make_slack(redis_client)
    card, approval_id = await request_deploy(slack)
    assert await slack.click(card, APPROVE, user=APPROVER, action_ts="1700000600.000001") == 200
    await slack.settle(lambda: bool(slack.fake.called("chat.update")))
    edit = slack.fake.called("chat.update")[0]
    assert edit.args["channel"] == card.args["channel"] and edit.args["ts"] == card.result["ts"]
    assert buttons(edit.args["blocks"]) == []
    assert edit.args["text"].startswith(f":white_check_mark: Approved by <@{APPROVER}>, <!date^")
    assert "|2026-11-23 14:00 UTC>" in edit.args["text"] and "{" not in edit.args["text"].split(">", 2)[-1]
    record_shown = json.dumps(edit.args["blocks"])
    assert "Expires" not in record_shown and "Who may approve" not in record_shown, "a compact record"
    assert "service=api, version=1.4.2, environment=production" in record_shown and "requested by <@U1>" in record_shown
    await slack.settle(lambda: any("deployed api 1.4.2" in m["text"] for m in slack.fake.answers()))
    # A double click (a new action_ts) and a replayed request (the same one): still one deploy.
    await slack.click(card, APPROVE, user=APPROVER, action_ts="1700000600.000002")
    await slack.click(card, APPROVE, user=APPROVER, action_ts="1700000600.000001")
    await slack.received(4)  # the command, three clicks
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    assert slack.channel.stats == {"published": 3, "duplicate": 1}
    assert [(d["service"], d["version"], d["by"]) for d in deploys(tmp_path)] == [("api", "1.4.2", "slack:T1:U1")]
    (told,) = slack.fake.called("chat.postEphemeral")
    assert told.args["user"] == APPROVER and f"approval {approval_id} was already approved" in told.args["text"]
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "approved" and record.decided_by == f"slack:T1:{APPROVER}"


async def test_not_now_snoozes_the_card_and_tells_the_requester(slack: SlackKit) -> None:
    """Not now (30 min): the card is marked snoozed in place, the thread hears it, no decision is made."""
    card, approval_id = await request_deploy(slack)
    await slack.click(card, SNOOZE, user="U2")  # not an approver: refused, to them only
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    assert "may not snooze" in slack.fake.called("chat.postEphemeral")[0].args["text"]
    assert await slack.click(card, SNOOZE, user=APPROVER) == 200
    await slack.settle(lambda: bool(slack.fake.called("chat.update")))
    edit = slack.fake.called("chat.update")[0]
    assert edit.args["ts"] == card.result["ts"] and f"by <@{APPROVER}> until <!date^" in json.dumps(edit.args["blocks"])
    await slack.settle(lambda: any("snoozed the approval for deploy" in m["text"] for m in slack.fake.answers()))
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending" and record.snoozed_by == f"slack:{TEAM}:{APPROVER}"
    assert "approval_snoozed" in [e.type for e in await slack.events()]


async def test_unauthorised_click_gets_an_ephemeral_refusal_and_stays_pending(slack: SlackKit) -> None:
    card, approval_id = await request_deploy(slack)
    await slack.click(card, APPROVE, user="U2")
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    (refusal,) = slack.fake.called("chat.postEphemeral")
    assert refusal.args["user"] == "U2" and refusal.args["channel"] == "C1"
    assert f"<@U2> may not decide approval {approval_id}" in refusal.args["text"]
    assert "slack:T1" not in refusal.args["text"] and "&lt;who" not in refusal.args["text"]
    assert refusal.args["thread_ts"] == card.args["thread_ts"]  # where the card is
    await slack.click(card, REJECT, user="U2")  # no dialog for someone who may not decide
    await slack.settle(lambda: len(slack.fake.called("chat.postEphemeral")) == 2)
    assert slack.fake.called("views.open") == [] and slack.fake.called("chat.update") == []
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"
    (state,) = await slack.harness.wiring.store.list_threads()
    assert state.status == "awaiting_approval"


async def test_reject_reason_from_the_dialog_reaches_the_agent(slack: SlackKit, tmp_path: Path) -> None:
    card, approval_id = await request_deploy(slack)
    await slack.click(card, REJECT, user=APPROVER)
    await until_called(slack, "views.open")
    (dialog,) = slack.fake.called("views.open")
    assert dialog.args["trigger_id"].startswith("trigger-") and approval_id in dialog.args["view"]["private_metadata"]
    assert await slack.submit_reason(dialog, "not during the freeze", user=APPROVER) == 200
    await slack.settle(lambda: bool(slack.fake.called("chat.update")))
    errors = [e for e in await slack.events() if isinstance(e, ev.ToolErrorEvent)]
    assert errors[-1].kind == "rejected" and "not during the freeze" in errors[-1].error
    edit = slack.fake.called("chat.update")[0]
    assert buttons(edit.args["blocks"]) == [] and edit.args["text"].startswith(
        f":no_entry: Rejected by <@{APPROVER}>, "
    )
    assert "UTC>: not during the freeze" in edit.args["text"] and "failed" not in edit.args["text"]
    answer = slack.fake.answers()[-1]["text"]
    assert f"rejected by <@{APPROVER}>: not during the freeze" in answer and "&lt;who" not in answer
    assert not (tmp_path / "data" / "deployments.json").exists() or deploys(tmp_path) == []


async def test_cards_go_to_the_approval_channel_and_the_thread_is_told(make_slack: MakeSlack) -> None:
    slack = await make_slack(SLACK_APPROVAL_CHANNEL="CAPPROVE")
    card, approval_id = await request_deploy(slack)
    assert card.args["channel"] == "CAPPROVE" and "thread_ts" not in card.args
    opener = slack.fake.called("chat.postMessage", channel="C1")[0]
    pointer = slack.fake.called("chat.postMessage", thread_ts=opener.result["ts"])[0]
    assert f"waiting for approval `{approval_id}` in <#CAPPROVE>" in pointer.args["text"]
    link = permalink("C1", opener.result["ts"])
    assert f"<{link}|the request thread>" in json.dumps(card.args["blocks"]), "the card links to the request"
    await slack.click(card, APPROVE, user=APPROVER)
    await slack.settle(lambda: any("deployed api" in m["text"] for m in slack.fake.answers()))
    (edit,) = slack.fake.called("chat.update")
    assert edit.args["channel"] == "CAPPROVE" and edit.args["ts"] == card.result["ts"]
    assert f"<{link}|the request thread>" in json.dumps(edit.args["blocks"]), "and so does its record"
    in_thread = [m["text"] for m in slack.fake.answers(thread_ts=opener.result["ts"])]
    assert any(text.startswith(f":white_check_mark: Approved by <@{APPROVER}>") for text in in_thread)
    assert any("(`deploy` approval" in text for text in in_thread)


async def until_called(slack: SlackKit, method: str) -> None:
    await slack.settle(lambda: bool(slack.fake.called(method)))


async def test_the_card_is_edited_by_whichever_process_renders_the_decision(slack: SlackKit) -> None:
    card, _ = await request_deploy(slack)
    wiring = slack.harness.wiring
    assert wiring.settings.slack is not None
    other = SlackChannel(
        wiring.settings.slack, bus=wiring.bus, store=wiring.store, tools=wiring.tools
    )  # a second process
    await slack.click(card, APPROVE, user=APPROVER)
    await slack.received(2)
    await slack.harness.drain()
    await slack.deliver(by=other)
    (edit,) = slack.fake.called("chat.update")
    assert edit.args["ts"] == card.result["ts"] and f"Approved by <@{APPROVER}>" in edit.args["text"]


async def test_a_quorum_of_two_updates_the_card_in_place_and_runs_once(make_slack: MakeSlack, tmp_path: Path) -> None:
    """U3's approval edits the card to "1 of 2" (buttons kept); the requester cannot count; U4's completes it."""
    oncall = f"slack:{TEAM}:U1,slack:{TEAM}:{APPROVER},slack:{TEAM}:U4"
    slack = await make_slack(BOT_TOOLS_FILE=quorum_tools(tmp_path, 2), BOT_GROUP_ONCALL=oncall)
    card, approval_id = await request_deploy(slack)
    assert "*Approvals*\\n0 of 2" in json.dumps(card.args["blocks"])
    await slack.click(card, APPROVE, user="U1")
    await slack.click(card, APPROVE, user=APPROVER)
    await slack.settle(lambda: bool(slack.fake.called("chat.update")))
    update = slack.fake.called("chat.update")[0]
    assert update.args["ts"] == card.result["ts"] and len(buttons(update.args["blocks"])) == 4, "still open"
    assert f"*Approvals*\\n1 of 2: <@{APPROVER}>" in json.dumps(update.args["blocks"])
    await slack.settle(lambda: len(slack.fake.called("chat.postEphemeral")) == 2)
    told = [c.args["text"] for c in slack.fake.called("chat.postEphemeral")]
    assert "you requested it" in told[0] and "your approval counts: 1 of 2 approvals" in told[1]
    assert not (tmp_path / "data" / "deployments.json").exists(), "nothing deployed yet"

    await slack.click(card, APPROVE, user="U4")
    await slack.settle(lambda: any("deployed api 1.4.2" in m["text"] for m in slack.fake.answers()))
    decided = slack.fake.called("chat.update")[-1]
    assert buttons(decided.args["blocks"]) == [] and decided.args["text"].startswith(
        ":white_check_mark: Approved by <@U4>"
    )
    assert len(deploys(tmp_path)) == 1
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and [v.by for v in record.votes] == [f"slack:{TEAM}:{APPROVER}", f"slack:{TEAM}:U4"]


async def test_a_button_for_another_digest_is_refused(slack: SlackKit) -> None:
    card, approval_id = await request_deploy(slack)
    stale = json.loads(json.dumps(card.args))
    for element in buttons(stale["blocks"]):
        element["value"] = f"{approval_id} 0123456789ab"
    await slack.click(dataclasses.replace(card, args=stale), APPROVE, user=APPROVER)
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    (told,) = slack.fake.called("chat.postEphemeral")
    assert "another version of this call (digest 0123456789ab)" in told.args["text"]
    record = await slack.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.status == "pending"


async def test_the_card_shows_the_tools_preview(slack: SlackKit) -> None:
    """The deploy tool's dry run is on the card as a code block (`core.runtime.previews`)."""
    card, _ = await request_deploy(slack)
    [preview] = [b for b in card.args["blocks"] if "*Preview*" in b.get("text", {}).get("text", "")]
    assert preview["text"]["text"].startswith("*Preview*\n```plan: deploy api 1.4.2 to production\n")
    assert "version: 1.0.0 -&gt; 1.4.2" in preview["text"]["text"] and "open incidents: none" in preview["text"]["text"]
