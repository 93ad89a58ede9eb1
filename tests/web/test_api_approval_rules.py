"""The approval rules as the web API carries them (issue 16): a quorum, digests, the wait timer and the
validity window, change freezes, target locks, standing grants and the audit trail, each driven over HTTP
and asserted on what a client sees: status codes, error codes and messages, and the thread's events.

The rules themselves are tested on the terminal's channel (tests/test_quorum.py and its neighbours); here
the question is whether the API hands each one to the core and each answer back to the client."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from core.domain.people import when
from core.redis import keys
from core.redis.audit import AuditLog
from tests.web.conftest import ALICE, BOB, CAROL, DAVE, Server

# bob asks for everything; alice, carol and dave approve. bob is on call too, so the requester is excluded
# by `allow_self = false`, not by being off the list. dave alone is a lead: the freeze override's group.
TOOLS = """
[groups]
oncall = ['web:alice', 'web:bob', 'web:carol', 'web:dave']
leads = ['web:dave']

[tools.failover]
description = 'Fail over the database; two people other than the requester must agree.'
executor = {kind='command', argv=['echo', 'failed over']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, approvals=2, expires_in=3600}

[tools.release]
description = 'Release a version; two approvals, which go stale after 15 minutes.'
executor = {kind='command', argv=['echo', 'released', '{version}']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, approvals=2, valid_for='15m', expires_in=3600}
parameters = {type='object', required=['version'], properties.version={type='string'}}

[tools.drain]
description = 'Drain a node; approvals open five minutes after the request.'
executor = {kind='command', argv=['echo', 'drained']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, wait='5m', expires_in=3600}

[tools.deploy]
description = 'Deploy a version of a service; one deploy per service at a time.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', '{version}']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, expires_in=600, lock='{service}', grants={max_for='8h', vary=['version']}}
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version']
properties.service = {type='string'}
properties.version = {type='string'}

[tools.hotfix]
description = 'Ship a hotfix, even in a freeze, with a lead overriding it.'
executor = {kind='command', argv=['echo', 'hotfixed', '{service}']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, freeze='override', freeze_override=['group:leads']}
parameters = {type='object', required=['service'], properties.service={type='string'}}
"""
# The harness's clock starts on Monday 23 November 2026 at 14:00 UTC, inside this freeze.
BLACK_FRIDAY = """
[freezes.black_friday]
start = 2026-11-20T00:00:00
end = 2026-11-30T09:00:00
timezone = "UTC"
reason = "peak trading"
"""


async def _server(start_server, client: aioredis.Redis, tmp_path: Path, calendar: str = "") -> Server:
    (tmp_path / "tools.toml").write_text(TOOLS)
    env = {"BOT_TOOLS_FILE": str(tmp_path / "tools.toml")}
    if calendar:
        (tmp_path / "calendar.toml").write_text(calendar)
        env["BOT_CALENDAR_FILE"] = str(tmp_path / "calendar.toml")
    return await start_server(client, **env)


async def _ask(server: Server, text: str, token: str = BOB) -> str:
    """A new thread asking for `text`, processed; its id."""
    reply = await server.call("POST", "/v1/threads", token=token, json={"text": text})
    assert reply.status == 202, reply.body
    await server.drain()
    return str(reply.body["thread_id"])


async def _pending(server: Server) -> list[dict[str, Any]]:
    return list((await server.call("GET", "/v1/approvals?status=pending")).body["approvals"])


async def _decide(server: Server, approval_id: str, token: str, **body: Any) -> Any:
    reply = await server.call("POST", f"/v1/approvals/{approval_id}/decision", token=token, json=body)
    await server.drain()
    return reply


async def _events(server: Server, thread_id: str, token: str = BOB) -> list[dict[str, Any]]:
    return list((await server.call("GET", f"/v1/threads/{thread_id}", token=token)).body["events"])


def _outputs(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["output"]).strip() for e in events if e["type"] == "tool_result"]


def _errors(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["error"]) for e in events if e["type"] == "tool_error"]


async def test_two_of_three_with_the_requester_excluded_and_a_third_approver_late(
    fake_redis, start_server, tmp_path
) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _ask(server, "/failover")
    [approval] = await _pending(server)
    assert (approval["needed"], approval["votes"]) == (2, [])

    own = await _decide(server, approval["approval_id"], BOB, decision="approve")
    assert (own.status, own.code) == (403, "not_an_approver")
    assert "you requested it, and this tool needs an approver other than the requester" in own.message

    first = await _decide(server, approval["approval_id"], ALICE, decision="approve")
    assert first.status == 202
    assert (
        first.body["message"] == "your approval counts: 1 of 2 approvals for failover (web:alice); waiting for 1 more"
    )
    assert _outputs(await _events(server, thread_id)) == [], "one approval is not enough"

    second = await _decide(server, approval["approval_id"], CAROL, decision="approve")
    assert second.status == 202, second.body
    assert _outputs(await _events(server, thread_id)) == ["failed over"]

    late = await _decide(server, approval["approval_id"], DAVE, decision="approve")
    assert (late.status, late.code) == (409, "approval_decided")
    assert f"approval {approval['approval_id']} was already approved by web:carol" in late.message
    events = await _events(server, thread_id)
    assert _outputs(events) == ["failed over"] and [e["type"] for e in events].count("tool_started") == 1
    [decided] = [e for e in events if e["type"] == "approval_decided"]
    assert decided["approved_by"] == ["web:alice", "web:carol"]


async def test_a_decision_with_the_digest_from_before_an_edit_is_refused(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _ask(server, "/release 1.0")
    [old] = await _pending(server)
    edit = await _decide(
        server, old["approval_id"], ALICE, decision="approve", args={"version": "1.1"}, digest=old["digest"]
    )
    assert edit.status == 202, edit.body
    [new] = await _pending(server)
    assert new["digest"] != old["digest"] and [v["by"] for v in new["votes"]] == ["web:alice"]

    stale = await _decide(server, new["approval_id"], CAROL, decision="approve", digest=old["digest"])
    assert (stale.status, stale.code) == (409, "approval_refused")
    assert f"your answer was for another version of this call (digest {old['digest'][:12]})" in stale.message
    replaced = await _decide(server, old["approval_id"], CAROL, decision="approve", digest=old["digest"])
    assert (replaced.status, replaced.code) == (409, "approval_decided"), "the old request answers no more"
    assert _outputs(await _events(server, thread_id)) == []

    fresh = await _decide(server, new["approval_id"], CAROL, decision="approve", digest=new["digest"])
    assert fresh.status == 202, fresh.body
    assert _outputs(await _events(server, thread_id)) == ["released 1.1"]


async def test_an_approval_before_the_wait_is_refused_and_counts_after_it(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _ask(server, "/drain")
    [approval] = await _pending(server)
    opens = server.harness.clock.now() + timedelta(minutes=5)
    assert approval["wait_until"] == opens.isoformat().replace("+00:00", "Z"), "the inbox counts down to it"

    early = await _decide(server, approval["approval_id"], ALICE, decision="approve")
    assert (early.status, early.code) == (409, "approval_refused")
    assert early.message == (
        f"approval {approval['approval_id']} can be given from 2026-11-23 14:05 UTC (its policy waits 5m after the "
        "request); a rejection is possible now. Nothing changed."
    )
    assert [a["status"] for a in await _pending(server)] == ["pending"]

    server.harness.clock.advance(5 * 60)
    assert (await _decide(server, approval["approval_id"], ALICE, decision="approve")).status == 202
    assert _outputs(await _events(server, thread_id)) == ["drained"]


async def test_an_approval_older_than_valid_for_no_longer_counts(fake_redis, start_server, tmp_path) -> None:
    """alice's approval is 16 minutes old when carol's arrives: only carol's counts, and alice approves again."""
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _ask(server, "/release 2.0")
    [approval] = await _pending(server)
    assert (await _decide(server, approval["approval_id"], ALICE, decision="approve")).status == 202
    server.harness.clock.advance(16 * 60)

    carol = await _decide(server, approval["approval_id"], CAROL, decision="approve")
    assert carol.status == 202
    assert carol.body["message"] == "your approval counts: 1 of 2 approvals for release (web:carol); waiting for 1 more"
    assert _outputs(await _events(server, thread_id)) == []

    again = await _decide(server, approval["approval_id"], ALICE, decision="approve")
    assert again.status == 202, again.body
    assert _outputs(await _events(server, thread_id)) == ["released 2.0"]


async def test_a_freeze_refuses_a_gated_call_and_an_override_needs_a_lead(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path, BLACK_FRIDAY)
    refused = await _ask(server, "/deploy api 1.0")
    [error] = _errors(await _events(server, refused))
    assert error.startswith("deploy is held by the change freeze black_friday (peak trading) until ")
    assert "Nothing ran and no approval was asked" in error
    assert await _pending(server) == []

    thread_id = await _ask(server, "/hotfix payments")
    [approval] = await _pending(server)
    assert approval["needed"] == 2 and approval["freeze"] == "black_friday"
    oncall = await _decide(server, approval["approval_id"], ALICE, decision="approve")
    assert oncall.status == 202
    assert (
        "1 of 2 approvals for hotfix (web:alice); still needs an approver from the freeze override"
        in (oncall.body["message"])
    )
    assert _outputs(await _events(server, thread_id)) == []
    carol = await _decide(server, approval["approval_id"], CAROL, decision="approve")
    assert (carol.status, carol.code) == (409, "approval_refused")
    assert "web:carol fills no group still open" in carol.message

    lead = await _decide(server, approval["approval_id"], DAVE, decision="approve")
    assert lead.status == 202, lead.body
    events = await _events(server, thread_id)
    assert _outputs(events) == ["hotfixed payments"]
    [decided] = [e for e in events if e["type"] == "approval_decided"]
    assert decided["override_by"] == "web:dave"


async def test_a_target_lock_held_by_one_thread_refuses_another_and_names_the_holder(
    fake_redis, start_server, tmp_path
) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    holder = await _ask(server, "/deploy api 1.0")
    assert len(await _pending(server)) == 1

    other = await _ask(server, "/deploy api 1.1", token=DAVE)
    [error] = _errors(await _events(server, other, DAVE))
    assert error.startswith(f"deploy on api is locked: thread {holder} ")
    assert f"holds it since {when(server.harness.clock.now())} for its deploy call" in error
    assert "Nothing ran and no approval was asked" in error
    assert len(await _pending(server)) == 1

    await _ask(server, "/deploy web 1.1", token=DAVE)  # another target: asked as usual
    assert len(await _pending(server)) == 2


async def test_a_standing_grant_used_and_then_revoked(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    await _ask(server, "/deploy api 1.0")
    [approval] = await _pending(server)
    granted = await _decide(server, approval["approval_id"], ALICE, decision="approve", grant_for=4 * 3600)
    assert granted.status == 202, granted.body
    [grant] = (await server.call("GET", "/v1/grants")).body["grants"]
    assert (grant["requester"], grant["granted_by"], grant["pattern"]) == (
        "web:bob",
        "web:alice",
        "service=api version=*",
    )

    used = await _ask(server, "/deploy api 1.1")
    events = await _events(server, used)
    assert _outputs(events) == ["deployed api 1.1"] and [e["type"] for e in events].count("grant_used") == 1
    assert await _pending(server) == []

    revoked = await server.call("DELETE", f"/v1/grants/{grant['grant_id']}")
    assert revoked.status == 200 and revoked.body["status"] == "revoked"
    after = await _ask(server, "/deploy api 1.2")
    assert _outputs(await _events(server, after)) == [] and len(await _pending(server)) == 1


async def _alter(client: aioredis.Redis, position: int, **change: Any) -> None:
    """Rewrite the audit stream with record `position` altered (a stream entry cannot be edited in place)."""
    entries = await client.xrange(keys.AUDIT_LOG)
    await client.delete(keys.AUDIT_LOG)
    for index, (_, fields) in enumerate(entries, start=1):
        record = json.loads(fields[b"r"])
        await client.xadd(keys.AUDIT_LOG, {"r": json.dumps(record | change if index == position else record)})


async def test_the_audit_trail_is_served_and_a_record_altered_in_redis_fails_verify(
    fake_redis, start_server, tmp_path
) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _ask(server, "/failover")
    [approval] = await _pending(server)
    await _decide(server, approval["approval_id"], ALICE, decision="approve")
    await _decide(server, approval["approval_id"], CAROL, decision="approve")
    trail = await server.call("GET", f"/v1/threads/{thread_id}/audit", token=BOB)
    assert trail.status == 200, trail.body
    records = trail.body["records"]
    assert [(r["fact"], r["who"]) for r in records] == [
        ("requested", "web:bob"),
        ("voted", "web:alice"),
        ("approved", "web:carol"),
        ("started", "web:carol"),
        ("result", "tool:failover"),
    ]
    audit = AuditLog(server.harness.wiring.store)
    assert (await audit.verify()).intact

    await _alter(fake_redis, 2, who="web:mallory")
    fault = (await audit.verify()).fault
    assert fault is not None and (fault.n, fault.problem) == (2, "changed")
