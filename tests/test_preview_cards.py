"""A tool's preview on each channel's card, without a server: shown whole, cut with the way to all of it,
or failed (`core.runtime.previews`; the cards built end to end are in each channel's approval tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.discord.cards import FIELD_LIMIT, approval_embed, preview_field
from adapters.email.compose import approval_rows
from adapters.email.readable import Readable
from adapters.slack.blocks import approval_card
from adapters.terminal import render
from core.domain import events as ev

URL = "https://ops.example.com/#thread/t1"


def card(**fields: object) -> ev.ApprovalRequest:
    base = {
        "id": "o1",
        "channel": "slack",
        "conversation": "c1",
        "thread_id": "t1",
        "approval_id": "a1",
        "tool": "deploy",
        "args": {"service": "api"},
        "reason": "ship it",
        "requester": "cli:sam",
        "approvers": ["cli:dana"],
        "expires_at": datetime(2026, 12, 2, 16, 0, tzinfo=UTC),
        "thread_url": URL,
    }
    return ev.ApprovalRequest.model_validate(base | fields)


PLAN = card(preview="plan: deploy api 1.5.0\n  version: 1.4.2 -> 1.5.0")
CUT = card(preview="line\n" * 300, preview_more=900)
FAILED = card(preview="deploy preview timed out after 20s", preview_failed=True)


def test_slack_shows_the_preview_as_a_code_block_and_what_it_leaves_out() -> None:
    shown = json.dumps(approval_card(PLAN)[1])
    assert json.dumps("*Preview*\n```plan: deploy api 1.5.0\n  version: 1.4.2 -&gt; 1.5.0```") in shown
    assert json.dumps(f"900 more characters: <{URL}|the whole preview>") in json.dumps(approval_card(CUT)[1])
    assert json.dumps(":warning: *Preview failed:* deploy preview timed out after 20s") in json.dumps(
        approval_card(FAILED)[1]
    )
    assert "Preview" not in json.dumps(approval_card(card())[1]), "no preview, no block"


def test_discord_shows_the_preview_in_a_field_that_fits() -> None:
    assert preview_field(PLAN) == ("Preview", "```\nplan: deploy api 1.5.0\n  version: 1.4.2 -> 1.5.0\n```")
    name, value = preview_field(CUT) or ("", "")
    assert name == "Preview" and len(value) <= FIELD_LIMIT
    left = int(value.rsplit("\n", 1)[1].split()[0])
    assert left > 900 and value.endswith(f"more characters: [the whole preview]({URL})"), "the field holds less"
    assert preview_field(FAILED) == ("⚠️ Preview failed", "deploy preview timed out after 20s")
    assert preview_field(card()) is None
    embed = approval_embed(PLAN)
    assert [field.name for field in embed.fields][:2] == ["Arguments", "Preview"]


@pytest.mark.parametrize(
    ("request_", "rows"),
    [
        (PLAN, [("Preview", PLAN.preview)]),
        (CUT, [("Preview", CUT.preview), ("Whole preview", f"900 more characters, in the request thread: {URL}")]),
        (FAILED, [("Preview failed", "deploy preview timed out after 20s")]),
    ],
)
def test_email_shows_the_preview_as_rows(request_: ev.ApprovalRequest, rows: list[tuple[str, str]]) -> None:
    shown = approval_rows(request_, Readable())
    start = [label for label, _ in shown].index(rows[0][0])
    assert shown[start : start + len(rows)] == rows


def test_the_terminal_shows_a_failed_preview_in_one_line() -> None:
    assert "bot>   preview failed: deploy preview timed out after 20s" in render(FAILED)
    assert "preview" not in render(card())
