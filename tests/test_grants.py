"""Standing grants: given with an approval (`approve <id> grant 4h`), used by later matching calls, revoked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.grants import run_grants
from core.domain import events as ev
from core.domain.errors import ConfigError
from core.domain.grants import Grant, asked_grant
from core.redis.audit import AuditLog
from core.tools.registry import load_tools
from tests.conftest import APPROVER, Harness

TOOLS = """
[groups]
oncall = ['cli:dana']
leads = ['cli:lee']

[tools.deploy]
description = 'Deploy a service version to an environment.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', '{version}', 'to', '{environment}']}
approval = {required=true, approvers=['group:oncall'], expires_in=600, grants={max_for='8h', when={environment=['staging', 'production']}, vary=['version']}}
policies = [{required=true, when={environment=['production']}, approvers=['group:oncall'], grants={max_for='1h', when={environment=['nowhere']}}}]
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version', 'environment']
properties.service = {type='string'}
properties.version = {type='string'}
properties.environment = {type='string'}

[tools.restart]
description = 'Restart a service; two people must agree.'
executor = {kind='command', argv=['echo', 'restarted', '{service}']}
approval = {required=true, approvers=['group:oncall', 'group:leads'], approvals=2}
parameters = {type='object', required=['service'], properties.service={type='string'}}
"""


def _harness(make_harness, client, tmp_path: Path, tools: str = TOOLS) -> Harness:
    (tmp_path / "tools.toml").write_text(tools)
    return make_harness(client, BOT_TOOLS_FILE=str(tmp_path / "tools.toml"))


async def _cards(h: Harness) -> list[ev.ApprovalRequest]:
    return [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest) and o.conversation == h.conversation]


async def _texts(h: Harness) -> list[str]:
    return [o.text for o in await h.outbox() if isinstance(o, ev.Reply | ev.Notice)]


async def _events(h: Harness) -> list[ev.Event]:
    [state] = [s for s in await h.wiring.store.list_threads() if s.conversation == h.conversation]
    return await h.wiring.store.load_events(state.thread_id)


# --- the pure pieces ---------------------------------------------------------------------------


def test_a_grant_covers_the_same_arguments_with_the_varying_ones_open() -> None:
    now = datetime(2026, 11, 23, 14, tzinfo=UTC)
    grant = Grant(
        grant_id="g1",
        tool="deploy",
        requester="cli:operator",
        args={"service": "api", "version": "1.0", "environment": "staging"},
        vary=["version"],
        granted_by=APPROVER,
        approval_id="a1",
        thread_id="t1",
        created_at=now,
        expires_at=now + timedelta(hours=4),
    )
    same = {"service": "api", "version": "2.0", "environment": "staging"}
    assert grant.covers("deploy", "cli:operator", same, now)
    assert not grant.covers("deploy", "cli:operator", same | {"environment": "production"}, now)
    assert not grant.covers("deploy", "cli:operator", same | {"extra": 1}, now), "a new argument is not covered"
    assert not grant.covers("deploy", "cli:someone", same, now), "only for its requester"
    assert not grant.covers("rollback", "cli:operator", same, now)
    assert not grant.covers("deploy", "cli:operator", same, now + timedelta(hours=4)), "expired"
    revoked = grant.model_copy(update={"revoked_by": APPROVER, "revoked_at": now})
    assert not revoked.covers("deploy", "cli:operator", same, now)
    assert grant.pattern() == "environment=staging service=api version=*"


def test_the_grant_words_of_a_decision() -> None:
    assert asked_grant("grant 4h looks fine") == (4 * 3600, "looks fine")
    assert asked_grant("grant for 1h30m") == (5400, "")
    assert asked_grant("grant") == (None, "")
    assert asked_grant("Grant, ship it") == (None, "ship it")
    assert asked_grant("granted, ship it") is None
    assert asked_grant("looks fine, grant 4h") is None, "only a comment that starts with it"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("approvals=2, grants={max_for='1h'}", "grants are not allowed where a call needs 2 approvals"),
        ("wait='5m', grants={max_for='1h'}", "grants are not allowed with a wait timer"),
        ("grants={max_for='1h', vary=['colour']}", "approval.grants names the argument 'colour'"),
        ("grants={max_for='30d'}", "max_for"),
    ],
)
def test_a_grant_policy_that_would_weaken_the_gate_is_a_config_error(tmp_path: Path, policy: str, message: str) -> None:
    path = tmp_path / "tools.toml"
    path.write_text(
        "[groups]\noncall = ['cli:dana', 'cli:lee']\n[tools.deploy]\ndescription = 'd'\n"
        "executor = {kind='command', argv=['true']}\n"
        f"approval = {{required=true, approvers=['group:oncall'], {policy}}}\n"
        "parameters = {type='object', properties.service={type='string'}}\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_tools(path)


# --- through real threads (terminal) -------------------------------------------------------------


async def test_a_standing_grant_used_and_then_revoked_from_the_terminal(
    fake_redis, make_harness, tmp_path, capsys
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.0 staging")
    [card] = await _cards(h)
    await h.say(f"approve {card.approval_id} grant 4h", sender=APPROVER)
    texts = await _texts(h)
    assert "deployed api 1.0 to staging" in texts
    [given] = [t for t in texts if "a standing grant" in t]
    assert "for deploy environment=staging service=api version=* until" in given
    [grant] = await h.wiring.grants.listed()
    assert (grant.requester, grant.granted_by, grant.expires_at) == (
        "cli:operator",
        APPROVER,
        h.clock.now() + timedelta(hours=4),
    )

    h.clock.advance(3600)
    await h.say("/deploy api 1.1 staging")  # another version: `vary` leaves it open
    assert (await _texts(h))[-1] == "deployed api 1.1 to staging"
    assert len(await _cards(h)) == 1, "no card for a call the grant covers"
    [used] = [e for e in await _events(h) if isinstance(e, ev.GrantUsed)]
    assert (used.grant_id, used.granted_by) == (grant.grant_id, APPROVER)
    assert any(f"runs under the standing grant {grant.grant_id}" in t for t in await _texts(h))

    await h.say("/deploy web 1.1 staging")  # another service: not covered
    assert len(await _cards(h)) == 2
    await h.say(f"reject {(await _cards(h))[-1].approval_id} not now", sender=APPROVER)

    assert await run_grants(h.wiring, "list") == 0
    assert grant.grant_id in capsys.readouterr().out
    assert await run_grants(h.wiring, "revoke", grant.grant_id, identity=APPROVER) == 0
    assert "revoked" in capsys.readouterr().out
    await h.say("/deploy api 1.2 staging")
    assert len(await _cards(h)) == 3, "a revoked grant covers nothing: the card is back"
    assert "deployed api 1.2 to staging" not in await _texts(h)

    records = await AuditLog(h.wiring.store).thread_records(used_thread := (await _state_id(h)))
    facts = [(r.fact, r.who) for r in records if r.fact.startswith("grant") or r.fact == "started"]
    assert facts[:4] == [
        ("grant_given", APPROVER),
        ("started", APPROVER),
        ("grant_used", APPROVER),
        ("started", APPROVER),
    ]
    assert facts[-1] == ("grant_revoked", APPROVER), "the revocation is on the trail of the thread it was given in"
    [revoked] = [r for r in records if r.fact == "grant_revoked"]
    assert revoked.detail["grant_id"] == grant.grant_id and revoked.source == f"grant:{grant.grant_id}"
    assert (await AuditLog(h.wiring.store).verify()).intact, "chained like every other record"
    assert used_thread


async def _state_id(h: Harness) -> str:
    [state] = [s for s in await h.wiring.store.list_threads() if s.conversation == h.conversation]
    return state.thread_id


async def test_a_grant_longer_than_the_policy_allows_is_refused_and_nothing_is_decided(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.0 staging")
    [card] = await _cards(h)
    await h.say(f"approve {card.approval_id} grant 9h", sender=APPROVER)
    assert "lasts at most 8h, not 9h" in (await _texts(h))[-1]
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and record.status == "pending"


async def test_no_grant_where_the_policy_in_force_gives_none_or_a_quorum_is_needed(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.0 production")  # the production policy's grants cover no call
    [card] = await _cards(h)
    await h.say(f"approve {card.approval_id} grant 1h", sender=APPROVER)
    assert "standing grants for deploy cover only calls with environment in ['nowhere']" in (await _texts(h))[-1]
    await h.say(f"approve {card.approval_id}", sender=APPROVER)
    assert "deployed api 1.0 to production" in await _texts(h)
    assert await h.wiring.threads.loop.grants.listed() == []  # type: ignore[union-attr]


async def test_a_grant_does_not_cover_another_requester(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api 1.0 staging")
    await h.say(f"approve {(await _cards(h))[0].approval_id} grant", sender=APPROVER)
    [grant] = await h.wiring.grants.listed()
    assert grant.expires_at == h.clock.now() + timedelta(hours=8), "`grant` alone: the policy's longest"
    other = Harness(wiring=h.wiring, clock=h.clock, user="cli:lee")
    await other.say("/deploy api 1.1 staging")
    assert len(await _cards(other)) == 1


async def test_a_change_freeze_still_holds_a_call_a_grant_covers(fake_redis, make_harness, tmp_path) -> None:
    """A grant skips the card, never the calendar: in a freeze the covered call is refused as any gated one."""
    (tmp_path / "calendar.toml").write_text(
        '[freezes.maintenance]\nstart = 2026-11-23T15:00:00\nend = 2026-11-23T18:00:00\ntimezone = "UTC"\n'
    )
    (tmp_path / "tools.toml").write_text(TOOLS)
    h = make_harness(
        fake_redis, BOT_TOOLS_FILE=str(tmp_path / "tools.toml"), BOT_CALENDAR_FILE=str(tmp_path / "calendar.toml")
    )
    await h.say("/deploy api 1.0 staging")
    await h.say(f"approve {(await _cards(h))[0].approval_id} grant 4h", sender=APPROVER)
    h.clock.advance(3600)  # 15:00: the maintenance freeze
    await h.say("/deploy api 1.1 staging")
    assert "held by the change freeze maintenance" in (await _texts(h))[-1]
    assert "deployed api 1.1 to staging" not in await _texts(h)
    assert not [e for e in await _events(h) if isinstance(e, ev.GrantUsed)]
