"""People and times in Slack's own forms, and questions with choices as buttons or a select menu."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.slack.blocks import CHOICE, mrkdwn, split_text
from core import Notice, Question, Reply, new_id, people
from core.domain import events as ev
from tests.conftest import ScriptedModel, call
from tests.slack.conftest import MakeSlack, SlackKit
from tests.slack.test_messages import ROOT, mention

THREAD = {"slack_team": "T1", "slack_channel": "C1", "slack_thread_ts": ROOT, "slack_user": "U1"}
AT = datetime(2026, 12, 2, 15, 49, 11, tzinfo=UTC)
DATE = "<!date^1796226551^{date_short_pretty} at {time}|2026-12-02 15:49 UTC>"


def test_markers_become_mentions_dates_and_names_and_the_rest_is_escaped() -> None:
    text = (
        f"{people.who('slack:T1:U9')} asked at {people.when(AT)}; {people.who('email:alice@example.com')}, "
        f"{people.who('cli:operator')}, {people.who('group:oncall')} and {people.who('slack:T0PEER001:U7')} <b>&"
    )
    assert mrkdwn(text, "T1") == (
        f"<@U9> asked at {DATE}; alice@example.com, operator, the oncall group and U7 &lt;b&gt;&amp;"
    )


def test_split_never_cuts_a_mention_or_a_date() -> None:
    text = "x" * 70 + people.who("slack:T1:U12345") + "y" * 50 + people.when(AT) + "z" * 30
    for limit in range(len(DATE), len(DATE) + 40):  # a mention or date longer than a piece cannot fit
        pieces = split_text(text, limit=limit, team="T1")
        assert "".join(pieces) == mrkdwn(text, "T1")
        assert all(p.count("<") == p.count(">") for p in pieces), (limit, pieces)


@pytest.fixture
async def renderer(make_slack: MakeSlack) -> SlackKit:
    return await make_slack(serve=False)


async def test_every_outbound_text_renders_the_markers(renderer: SlackKit) -> None:
    who, when = people.who("slack:T1:U9"), people.when(AT)
    base = {"channel": "slack", "conversation": f"T1/C1/{ROOT}", "thread_id": "t1", "reply_to": THREAD}
    await renderer.channel.render(Notice(id=new_id(), text=f"{who} paused this at {when}", **base))
    await renderer.channel.render(Notice(id=new_id(), text=f"{who} may not", to="slack:T1:U2", **base))
    await renderer.channel.render(Reply(id=new_id(), text=f"asked by {who}", **base))
    await renderer.channel.render(Question(id=new_id(), question=f"{who}, since {when}?", **base))
    shown = [c.args["text"] for c in renderer.fake.calls if c.method.startswith("chat.post")]
    assert shown == [
        f":information_source: <@U9> paused this at {DATE}",
        ":information_source: <@U9> may not",
        "asked by <@U9>",
        f":question: <@U9>, since {DATE}?\n_Answer with a reply in this thread._",
    ]


async def test_a_question_with_options_is_buttons_and_a_click_answers_it(make_slack: MakeSlack) -> None:
    model = ScriptedModel(
        [
            call("ask_human", question="Which environment?", options=["staging", "production"]),
            call("reply", message="ok"),
        ]
    )
    slack = await make_slack(model=model)
    await slack.event(mention("deploy api"))
    await slack.settle(lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")))
    card = next(c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args)
    assert card.args["text"] == ":question: Which environment? (reply with 1 or 2, or write your own answer)"
    (actions,) = [b for b in card.args["blocks"] if b["type"] == "actions"]
    assert [(e["text"]["text"], e["value"]) for e in actions["elements"]] == [
        ("staging", "staging"),
        ("production", "production"),
    ]
    (asked,) = [e for e in await slack.events() if isinstance(e, ev.HumanQuestion)]
    assert actions["block_id"] == f"question:{asked.call_id}"

    # Someone else's click is refused where they clicked, only to them; the question stays open.
    await slack.click(card, f"{CHOICE}.1", user="U2")
    await slack.settle(lambda: bool(slack.fake.called("chat.postEphemeral")))
    (refusal,) = slack.fake.called("chat.postEphemeral")
    assert refusal.args["user"] == "U2" and refusal.args["thread_ts"] == ROOT
    (state,) = await slack.harness.wiring.store.list_threads()
    assert state.status == "awaiting_human"

    await slack.click(card, f"{CHOICE}.1", user="U1")
    await slack.settle(lambda: any(m["text"] == "ok" for m in slack.fake.answers()))
    answers = [e for e in await slack.events() if isinstance(e, ev.HumanAnswer)]
    assert [a.text for a in answers] == ["production"]
    assert model.requests[-1].state.last_user_text == "production"


async def test_many_options_are_a_select_menu(make_slack: MakeSlack) -> None:
    options = ["api", "web", "worker", "payments", "search", "billing"]
    model = ScriptedModel([call("ask_human", question="Which service?", options=options), call("reply", message="ok")])
    slack = await make_slack(model=model)
    await slack.event(mention("restart something", ts="1700000007.000700"))
    await slack.settle(lambda: any("blocks" in c.args for c in slack.fake.called("chat.postMessage")))
    card = next(c for c in slack.fake.called("chat.postMessage") if "blocks" in c.args)
    (actions,) = [b for b in card.args["blocks"] if b["type"] == "actions"]
    (menu,) = actions["elements"]
    assert menu["type"] == "static_select" and [o["value"] for o in menu["options"]] == options
    assert "reply with 1, 2, 3, 4, 5 or 6" in card.args["text"]
    await slack.click(card, f"{CHOICE}.select", user="U1", selected="payments")
    await slack.settle(lambda: any(m["text"] == "ok" for m in slack.fake.answers()))
    assert model.requests[-1].state.last_user_text == "payments"
    assert json.dumps(card.args["blocks"]).count("Or reply in this thread") == 1
