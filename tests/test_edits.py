"""Edit before approve, through real threads on the terminal's channel (`approve <id> name=value`) and as the
API sends it (the decision's `args`): the call runs with the edited arguments, an edit that breaks the
schema is refused, an edit into a stricter policy asks for its approvals, the old request answers no more.
"""

from __future__ import annotations

import pytest

from core.domain import events as ev
from core.model.context import render
from core.tools.edits import edited, split_edits
from core.tools.registry import ToolSpec

TOOLS = """
[groups]
oncall = ['cli:operator', 'cli:alice', 'cli:bob']

[tools.deploy]
description = 'Deploy a version of a service to an environment.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', '{version}', 'to', '{environment}']}
approval = {required=true, approvers=['group:oncall']}
policies = [{when={environment=['production']}, required=true, approvals=2, approvers=['group:oncall']}]
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version', 'environment']
additionalProperties = false
properties.service = {type='string'}
properties.version = {type='string', pattern='^[0-9]+[.][0-9]+$'}
properties.environment = {type='string', enum=['staging', 'production']}
properties.replicas = {type='integer', minimum=1}
"""


def _harness(make_harness, client, tmp_path):
    (tmp_path / "tools.toml").write_text(TOOLS)
    return make_harness(client, BOT_TOOLS_FILE=str(tmp_path / "tools.toml"))


async def _cards(h) -> list[ev.ApprovalRequest]:
    return [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]


async def _texts(h) -> list[str]:
    return [o.text for o in await h.outbox() if isinstance(o, ev.Notice | ev.Reply)]


async def _events(h) -> list[ev.Event]:
    state = (await h.wiring.store.list_threads())[0]
    return await h.wiring.store.load_events(state.thread_id)


async def test_an_edit_then_approve_runs_the_edited_call_and_tells_the_model(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.2 staging")
    [card] = await _cards(h)
    await h.say(f"approve {card.approval_id} version=1.3 replicas=2 checked the changelog", sender="cli:alice")
    texts = await _texts(h)
    assert texts[-1] == "deployed api 1.3 to staging"
    assert any('<who:cli:alice> edited deploy before approving (version: "1.2" → "1.3"' in t for t in texts)
    events = await _events(h)
    [edit] = [e for e in events if isinstance(e, ev.ArgumentsEdited)]
    assert edit.before == {"service": "api", "version": "1.2", "environment": "staging"}
    assert edit.after == {**edit.before, "version": "1.3", "replicas": 2}
    assert edit.digest_before == card.digest and edit.digest_after != card.digest
    [decided] = [e for e in events if isinstance(e, ev.ApprovalDecided)]
    assert decided.approval_id != card.approval_id and decided.comment == "checked the changelog"
    old = await h.wiring.store.get_approval(card.approval_id)
    new = await h.wiring.store.get_approval(decided.approval_id)
    assert old is not None and old.status == "edited" and old.decided_by == "cli:alice"
    assert new is not None and new.status == "approved" and new.args == edit.after
    assert new.edited_from == card.approval_id
    # The model asked for 1.2: it reads what an approver changed and what ran.
    messages = render(events, {"deploy"}, budget_tokens=10_000)
    said = str(messages)
    assert "arguments_edited" in said and '"version": "1.3"' in said

    await h.say(f"approve {card.approval_id}", sender="cli:bob")  # the old card's button
    assert "was replaced when <who:cli:alice> edited its arguments" in (await _texts(h))[-1]


async def test_an_edit_that_breaks_the_schema_is_refused_and_changes_nothing(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.2 staging")
    [card] = await _cards(h)
    for bad in ("environment=moon", "version=latest", "replicas=0", "replicas=many"):
        await h.say(f"approve {card.approval_id} {bad}", sender="cli:alice")
        refusal = (await _texts(h))[-1]
        assert "your edit does not fit deploy's parameters" in refusal, (bad, refusal)
        assert f"approval {card.approval_id} still waits" in refusal
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and record.status == "pending" and record.args["version"] == "1.2"
    assert not [e for e in await _events(h) if isinstance(e, ev.ArgumentsEdited | ev.ToolStarted)]
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert (await _texts(h))[-1] == "deployed api 1.2 to staging", "the request still stands"


async def test_an_edit_into_a_stricter_policy_asks_for_its_approvals(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.2 staging")
    [card] = await _cards(h)
    assert card.needed == 1
    await h.say(f"approve {card.approval_id} environment=production", sender="cli:alice")
    strict = (await _cards(h))[-1]
    assert strict.approval_id != card.approval_id and strict.needed == 2
    assert strict.args["environment"] == "production" and strict.approved_by == ["cli:alice"]
    assert "your edit is recorded as approval" in (await _texts(h))[-1]
    assert "1 of 2 approvals for deploy" in (await _texts(h))[-1]
    assert not [e for e in await _events(h) if isinstance(e, ev.ToolStarted)], "one approval is not enough now"
    await h.say(f"approve {strict.approval_id}", sender="cli:alice")
    assert "already" in (await _texts(h))[-1]
    await h.say(f"approve {strict.approval_id}", sender="cli:bob")
    assert (await _texts(h))[-1] == "deployed api 1.2 to production"
    [decided] = [e for e in await _events(h) if isinstance(e, ev.ApprovalDecided)]
    assert decided.approved_by == ["cli:alice", "cli:bob"]


async def test_an_api_decision_with_args_edits_and_a_stale_digest_is_refused(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.2 staging")
    [card] = await _cards(h)

    def decision(digest: str, **args: object) -> ev.DecisionTrigger:
        return ev.DecisionTrigger(
            id=f"d-{digest[:4]}-{len(args)}",
            channel="cli",
            conversation=h.conversation,
            sender="cli:alice",
            approval_id=card.approval_id,
            decision="approve",
            digest=digest,
            args=dict(args),
        )

    await h.wiring.bus.publish(decision("0123456789ab", version="1.4"))
    await h.drain()
    assert "your answer was for another version of this call" in (await _texts(h))[-1]
    await h.wiring.bus.publish(decision(card.short, version="1.4", replicas=None))
    await h.drain()
    assert (await _texts(h))[-1] == "deployed api 1.4 to staging"


def test_name_value_edits_are_read_from_the_comment() -> None:
    spec = ToolSpec.model_validate(
        {
            "name": "deploy",
            "description": "d",
            "parameters": {
                "type": "object",
                "properties": {
                    "version": {"type": "string"},
                    "replicas": {"type": "integer"},
                    "note": {"type": "string"},
                    "canary": {"type": "boolean"},
                },
            },
        }
    )
    assert split_edits(spec, "looks good") == ({}, "looks good")
    assert split_edits(spec, "replicas=3 canary=yes fine by me") == ({"replicas": 3, "canary": True}, "fine by me")
    assert split_edits(spec, "note=rolled back at 9\nok") == ({"note": "rolled back at 9"}, "ok")
    assert split_edits(spec, 'version="1.4" ratio=fine') == ({"version": "1.4"}, "ratio=fine")
    assert split_edits(spec, "note=") == ({"note": None}, "")
    assert edited({"version": "1", "note": "x"}, {"note": None, "replicas": 2}) == {"version": "1", "replicas": 2}
    with pytest.raises(Exception, match="replicas must be integer"):
        split_edits(spec, "replicas=three")
