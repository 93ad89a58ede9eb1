"""Change freezes, allowed windows and target locks, through real threads on one Redis with a fixed clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.check import check_config
from core.domain import events as ev
from core.domain.errors import ConfigError
from core.domain.people import when
from core.redis.locks import Holder, Locks
from core.redis.sweeper import Sweeper
from core.tools.registry import load_tools
from tests.conftest import APPROVER, Harness
from tests.conftest import test_settings as settings_for

# The harness's clock starts on Monday 23 November 2026 at 14:00 UTC (15:00 in Berlin).
TOOLS = """
[groups]
oncall = ['cli:operator']
leads = ['cli:lee']

[tools.deploy]
description = 'Deploy a service to an environment.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', 'to', '{environment}']}
approval = {required=true, when={environment=['production']}, approvers=['group:oncall'], expires_in=600, lock='{service}/{environment}'}
[tools.deploy.parameters]
type = 'object'
required = ['service', 'environment']
properties.service = {type='string'}
properties.environment = {type='string'}

[tools.hotfix]
description = 'Ship a hotfix, even in a freeze, with a lead overriding it.'
executor = {kind='command', argv=['echo', 'hotfixed', '{service}']}
approval = {required=true, approvers=['group:oncall'], freeze='override', freeze_override=['group:leads']}
parameters = {type='object', required=['service'], properties.service={type='string'}}
"""
BLACK_FRIDAY = """
[freezes.black_friday]
start = 2026-11-20T00:00:00
end = 2026-11-30T09:00:00
timezone = "Europe/Berlin"
reason = "peak trading"
"""
LATER_TODAY = """
[freezes.maintenance]
start = 2026-11-23T14:05:00
end = 2026-11-23T18:00:00
timezone = "UTC"
"""
BUSINESS_HOURS = """
[windows.business_hours]
cron = "0 9 * * 1-5"
duration = "8h"
timezone = "Europe/Berlin"
"""


def _harness(make_harness, client, tmp_path: Path, calendar: str = "", **env: str) -> Harness:
    (tmp_path / "tools.toml").write_text(TOOLS)
    (tmp_path / "calendar.toml").write_text(calendar)
    return make_harness(
        client, BOT_TOOLS_FILE=str(tmp_path / "tools.toml"), BOT_CALENDAR_FILE=str(tmp_path / "calendar.toml"), **env
    )


def _other(h: Harness) -> Harness:
    """Another conversation (so another thread) on the same core."""
    return Harness(wiring=h.wiring, clock=h.clock)


async def _state(h: Harness):
    return next(s for s in await h.wiring.store.list_threads() if s.conversation == h.conversation)


async def _replies(h: Harness) -> list[str]:
    return [o.text for o in await h.outbox() if isinstance(o, ev.Reply) and o.conversation == h.conversation]


async def _last_text(h: Harness) -> str:
    last = (await h.outbox())[-1]
    assert isinstance(last, ev.Notice | ev.Reply), last
    return last.text


async def _approval(h: Harness) -> ev.ApprovalRequest:
    return [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest) and o.conversation == h.conversation][-1]


async def test_a_freeze_refuses_a_gated_deploy_with_its_name_and_end_while_an_ungated_one_runs(
    redis_client, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, redis_client, tmp_path, BLACK_FRIDAY)
    await h.say("/deploy api production")
    [refusal] = await _replies(h)
    assert refusal.startswith("deploy is held by the change freeze black_friday (peak trading) until ")
    assert when(datetime(2026, 11, 30, 8, 0, tzinfo=UTC)) in refusal, "09:00 in Berlin"
    assert "Nothing ran and no approval was asked; ask again after" in refusal
    assert not [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]
    assert await h.wiring.store.pending_approvals() == []
    state = await _state(h)
    assert state.status == "done" and state.last_error_kind == "rejected"
    events = await h.wiring.store.load_events(state.thread_id)
    assert not [e for e in events if isinstance(e, ev.ToolStarted | ev.ApprovalRequested)]

    await h.say("/deploy api staging")  # not gated: a freeze does not hold it
    assert (await _replies(h))[-1] == "deployed api to staging"


async def test_outside_every_window_a_gated_call_is_refused_until_the_next_opens(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, BUSINESS_HOURS)
    h.clock.advance(3 * 3600)  # 18:00 in Berlin: closed
    await h.say("/deploy api production")
    [refusal] = await _replies(h)
    assert refusal.startswith("deploy runs only inside the allowed window business_hours; the next opens at ")
    assert when(datetime(2026, 11, 24, 8, 0, tzinfo=UTC)) in refusal
    h.clock.advance(15 * 3600)  # Tuesday 09:00 in Berlin
    await h.say("/deploy api production")
    assert (await _approval(h)).args == {"service": "api", "environment": "production"}


async def test_an_approval_given_after_a_freeze_began_does_not_run(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, LATER_TODAY)
    await h.say("/deploy api production")
    approval = await _approval(h)
    h.clock.advance(360)  # 14:06, before the approval expires: the maintenance freeze holds it now
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    reply = (await _replies(h))[-1]
    assert "held by the change freeze maintenance" in reply and "It was approved but did not run" in reply
    events = await h.wiring.store.load_events((await _state(h)).thread_id)
    assert not [e for e in events if isinstance(e, ev.ToolStarted)]
    assert await Locks(fake_redis).holder("api/production") is None, "the thread no longer holds the call"


async def test_a_freeze_override_policy_asks_for_approval_and_records_the_freeze(
    fake_redis, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, BLACK_FRIDAY)
    await h.say("/hotfix payments")
    assert (await _approval(h)).tool == "hotfix"
    notice = next(o for o in await h.outbox() if isinstance(o, ev.Notice))
    assert "held by the change freeze black_friday" in notice.text
    assert "needs an approval from the leads group (<who:cli:lee>)" in notice.text
    events = await h.wiring.store.load_events((await _state(h)).thread_id)
    [recorded] = [e for e in events if isinstance(e, ev.ToolCall)]
    assert (recorded.freeze, recorded.freeze_until) == ("black_friday", datetime(2026, 11, 30, 8, 0, tzinfo=UTC))


async def test_a_freeze_override_is_one_more_approval_from_the_override_group(
    fake_redis, make_harness, tmp_path
) -> None:
    """On call alone is not enough in a freeze: the quorum has a slot only the override group fills."""
    h = _harness(make_harness, fake_redis, tmp_path, BLACK_FRIDAY)
    await h.say("/hotfix payments")
    approval = await _approval(h)
    assert approval.needed == 2 and approval.open_groups == ["freeze override"]
    assert approval.reason.startswith("overrides the change freeze black_friday until ")
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    progress = await _last_text(h)
    assert "1 of 2 approvals for hotfix" in progress
    assert "still needs an approver from the freeze override (the leads group" in progress
    assert "hotfixed" not in " ".join(await _replies(h))
    await h.say(f"approve {approval.approval_id}", sender="cli:lee")
    assert (await _replies(h))[-1] == "hotfixed payments"
    events = await h.wiring.store.load_events((await _state(h)).thread_id)
    [decided] = [e for e in events if isinstance(e, ev.ApprovalDecided)]
    assert decided.override_by == "cli:lee" and sorted(decided.approved_by) == [APPROVER, "cli:lee"]


async def test_an_override_group_member_alone_is_not_a_quorum(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, BLACK_FRIDAY)
    await h.say("/hotfix payments")
    approval = await _approval(h)
    await h.say(f"approve {approval.approval_id}", sender="cli:lee")
    assert "still needs an approver from" not in await _last_text(h), "lee filled the override slot"
    assert "1 of 2 approvals for hotfix (<who:cli:lee>); waiting for 1 more" in await _last_text(h)
    await h.say(f"approve {approval.approval_id}", sender="cli:lee")
    assert "you approved" in await _last_text(h) and "already" in await _last_text(h)
    record = await h.wiring.store.get_approval(approval.approval_id)
    assert record is not None and record.status == "pending" and len(record.votes) == 1


async def test_an_override_policy_does_not_start_a_call_asked_for_before_the_freeze_began(
    fake_redis, make_harness, tmp_path
) -> None:
    """The approval was given for a call no freeze held: it carries no override, so it does not start in one."""
    h = _harness(make_harness, fake_redis, tmp_path, LATER_TODAY)
    await h.say("/hotfix payments")
    approval = await _approval(h)
    h.clock.advance(360)
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    assert "It was approved but did not run" in (await _replies(h))[-1]


async def test_a_lock_held_by_one_thread_refuses_another_on_the_same_target_only(
    redis_client, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, redis_client, tmp_path, BOT_PUBLIC_URL="https://bot.example")
    await h.say("/deploy api production")
    holder = await _state(h)
    assert holder.status == "awaiting_approval"

    other = _other(h)
    await other.say("/deploy api production")
    [refusal] = await _replies(other)
    assert refusal.startswith(
        f"deploy on api/production is locked: thread {holder.thread_id} "
        f"(https://bot.example/#thread/{holder.thread_id}) holds it since {when(h.clock.now())} for its deploy call"
    )
    assert "Nothing ran and no approval was asked" in refusal
    assert len(await h.wiring.store.pending_approvals()) == 1

    await other.say("/deploy web production")  # another target
    assert (await _approval(other)).args == {"service": "web", "environment": "production"}


async def test_the_lock_is_released_when_the_call_is_rejected(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api production")
    await h.say(f"reject {(await _approval(h)).approval_id} not now", sender=APPROVER)
    assert await Locks(fake_redis).held((await _state(h)).thread_id) == {}
    other = _other(h)
    await other.say("/deploy api production")
    assert (await _state(other)).status == "awaiting_approval"


async def test_the_lock_is_released_when_the_approval_expires(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path)
    await h.say("/deploy api production")
    h.clock.advance(601)
    await Sweeper(h.wiring.store, h.wiring.bus, h.wiring.tools, h.clock).sweep()
    await h.drain()
    assert (await _state(h)).pending_approval is None
    assert await Locks(fake_redis).holder("api/production") is None
    other = _other(h)
    await other.say("/deploy api production")
    assert (await _state(other)).status == "awaiting_approval"


async def test_the_lock_is_held_while_the_tool_runs_and_released_when_it_completes(
    redis_client, make_harness, tmp_path
) -> None:
    h = _harness(make_harness, redis_client, tmp_path)
    await h.say("/deploy api production")
    thread_id = (await _state(h)).thread_id
    locks = Locks(redis_client)
    assert (await locks.holder("api/production")).thread_id == thread_id
    await h.say(f"approve {(await _approval(h)).approval_id}", sender=APPROVER)
    assert (await _replies(h))[-1] == "deployed api to production"
    assert await locks.holder("api/production") is None and await locks.held(thread_id) == {}
    other = _other(h)
    await other.say("/deploy api production")
    assert (await _state(other)).status == "awaiting_approval"


async def test_a_thread_retakes_its_own_lock_and_releases_only_what_it_no_longer_holds(redis_client, clock) -> None:
    locks = Locks(redis_client)
    mine = Holder("t1", "call-1", "deploy", clock.now())
    assert await locks.take("api/production", mine, 60) is None
    assert await locks.take("api/production", mine, 60) is None, "the same call again: renewed"
    newer = Holder("t1", "call-2", "deploy", clock.now())
    assert await locks.take("api/production", newer, 60) is None, "a new call of the same thread takes it over"
    theirs = Holder("t2", "call-9", "rollback", clock.now())
    assert await locks.take("api/production", theirs, 60) == newer
    assert await locks.take("web/production", theirs, 60) is None
    assert 0 < await redis_client.pttl("{locks}:target:api/production") <= 360_000, "ttl plus the margin"

    assert await locks.release("t1", keep=["call-2"]) == []
    assert await locks.release("t2") == ["web/production"]
    assert await locks.release("t1") == ["api/production"]
    assert await locks.holder("api/production") is None and await locks.held("t1") == {}


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("freeze='override'", 'freeze = "override" needs freeze_override'),
        ("freeze_override=['group:leads']", 'freeze_override is set but freeze is "refuse"'),
        ("freeze='override', freeze_override=['group:nobody']", "unknown approver group 'group:nobody'"),
        ("lock='{service}/{region}'", "approval.lock names {region}, which is not one of its parameters"),
        ("freeze='sometimes'", "freeze"),
    ],
)
def test_a_bad_freeze_or_lock_policy_is_a_config_error(tmp_path, policy, message) -> None:
    path = tmp_path / "tools.toml"
    path.write_text(
        "[groups]\noncall = ['cli:operator']\n[tools.deploy]\ndescription = 'Deploy.'\n"
        "executor = {kind='command', argv=['echo']}\n"
        f"approval = {{required=true, approvers=['group:oncall'], {policy}}}\n"
        "parameters = {type='object', properties.service={type='string'}}\n"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_tools(path)


async def test_check_config_names_a_bad_calendar(tmp_path, embedded_redis, capsys) -> None:
    calendar = tmp_path / "calendar.toml"
    calendar.write_text('[freezes.weekend]\ncron = "0 16 * * 5"\nduration = "64h"\ntimezone = "Europe/Berlinn"\n')
    settings = settings_for(tmp_path, BOT_CALENDAR_FILE=str(calendar), REDIS_URL=embedded_redis)
    assert await check_config(settings, {"PATH": "/usr/bin:/bin"}) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ERR")]
    zone = "'Europe/Berlinn' is not an IANA time zone; use a name like 'Europe/Berlin' or 'UTC'"
    assert errors == [f"ERR freeze 'weekend' in {calendar}: timezone: {zone}"]
    calendar.write_text(BLACK_FRIDAY + BUSINESS_HOURS)
    assert await check_config(settings, {"PATH": "/usr/bin:/bin"}) == 0
    assert f"ok  calendar: freezes black_friday; windows business_hours from {calendar}" in capsys.readouterr().out
