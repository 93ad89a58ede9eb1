"""The Discord forms of core's people and times, and the card's parts, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from adapters.discord.cards import approvers_line, args_block, decided_sentence
from adapters.discord.text import native
from core import people
from core.domain import events as ev

AT = datetime(2026, 12, 2, 15, 49, 11, 189419, tzinfo=UTC)
EPOCH = int(AT.timestamp())


def test_markers_become_mentions_readable_names_and_discord_timestamps() -> None:
    text = (
        f"{people.who('discord:333')} may not decide approval a1; allowed approvers: the oncall group "
        f"({people.who('cli:operator')}, {people.who('email:dana@example.com')}, {people.who('discord:111')}); "
        f"already approved by {people.who('slack:T0PEER001:U0ONCALL1')} at {people.when(AT)}"
    )
    assert native(text) == (
        "<@333> may not decide approval a1; allowed approvers: the oncall group "
        f"(operator, dana@example.com, <@111>); already approved by U0ONCALL1 at <t:{EPOCH}:f>"
    )


def test_only_the_approvers_discord_can_reach_are_listed() -> None:
    assert approvers_line(["discord:111", "discord:112"]) == "<@111>, <@112>"
    assert approvers_line(["discord:111", "group:oncall", "cli:operator", "email:a@b.c"]) == (
        "<@111>, the oncall group and 2 on other channels"
    )
    assert approvers_line(["cli:operator"]) == "1 on another channel"
    assert approvers_line([]) == "nobody is configured"


def test_long_arguments_are_clipped_to_one_field_and_say_where_to_see_them_whole() -> None:
    block = args_block({"script": "x" * 5000})
    assert len(block) <= 1024 and block.startswith("```json\n") and block.endswith("\n```")
    assert "`bot approvals` shows them whole" in block
    assert json.loads(args_block({"a": "```"}).removeprefix("```json\n").removesuffix("\n```")) == {"a": "`\u200b``"}


def receipt(decision: ev.Verdict, comment: str = "") -> ev.DecisionReceipt:
    return ev.DecisionReceipt(
        id="o1",
        channel="discord",
        conversation="dm/1",
        thread_id="t1",
        approval_id="a1",
        decision=decision,
        by="discord:111",
        at=AT,
        comment=comment,
        tool="deploy",
    )


def test_a_decision_is_one_sentence_and_a_rejection_says_rejected() -> None:
    when = f"<t:{EPOCH}:f> (<t:{EPOCH}:R>)"
    assert decided_sentence(receipt("approve")) == f"✅ <@111> approved `deploy` {when}"
    assert decided_sentence(receipt("reject", "not now")) == f"❌ <@111> rejected `deploy` {when}: not now"
    assert decided_sentence(receipt("expire")) == f"⌛ `deploy` expired {when} without a decision; it did not run"
