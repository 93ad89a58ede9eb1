"""The approvals inbox's API: filters by agent, tool, requester, channel and status; snooze; bulk decisions."""

from __future__ import annotations

from core.domain import events as ev
from core.redis.sweeper import Sweeper
from tests.web.conftest import BOB, DAVE, Server
from tests.web.test_approval_listing import ids, request


async def test_the_inbox_filters_by_agent_tool_requester_channel_and_status(server: Server) -> None:
    first, second = await request(server, "api"), await request(server, "web")
    record = await server.harness.wiring.store.get_approval(first)
    assert record is not None and record.agent
    assert await ids(server, f"agent={record.agent}") == [first, second], "soonest to expire first"
    assert await ids(server, "agent=nobody") == []
    assert await ids(server, f"tool={record.tool}&channel={record.channel}") == [first, second]
    assert await ids(server, "channel=slack") == []
    assert await ids(server, "requester=web:bob&tool=restart") == []
    snoozed = await server.call("POST", f"/v1/approvals/{second}/snooze", json={"duration": "10m"})
    assert snoozed.status == 202, snoozed.body
    await server.drain()
    assert await ids(server, "status=snoozed") == [second]
    assert await ids(server, "status=pending") == [first, second], "a snoozed request is still pending"
    bad = await server.call("GET", "/v1/approvals?agent=Not%20A%20Name")
    assert bad.status == 422


async def test_a_snooze_through_the_api_is_checked_now_and_tells_the_requester(server: Server) -> None:
    approval_id = await request(server, "api")
    refused = await server.call("POST", f"/v1/approvals/{approval_id}/snooze", token=DAVE, json={"duration": "5m"})
    assert (refused.status, refused.code) == (403, "not_an_approver")
    too_long = await server.call("POST", f"/v1/approvals/{approval_id}/snooze", json={"duration": "2d"})
    assert (too_long.status, too_long.code) == (409, "snooze_too_long") and "expires at" in too_long.message
    nonsense = await server.call("POST", f"/v1/approvals/{approval_id}/snooze", json={"duration": "1d1d"})
    assert (nonsense.status, nonsense.code) == (422, "invalid_snooze")
    missing = await server.call("POST", "/v1/approvals/nosuchid/snooze")
    assert missing.status == 404

    accepted = await server.call("POST", f"/v1/approvals/{approval_id}/snooze")  # the default: 30 minutes
    assert accepted.status == 202 and "asked again at" in accepted.body["message"], accepted.body
    await server.drain()
    record = await server.harness.wiring.store.get_approval(approval_id)
    assert record is not None and record.snoozed_by == "web:alice" and record.status == "pending"
    events = (await server.call("GET", f"/v1/threads/{record.thread_id}/events", token=BOB)).body["events"]
    assert [e["type"] for e in events].count("approval_snoozed") == 1
    # The requester's channel is the API: the notice that tells them is in its outbox.
    _, notices = await server.harness.wiring.bus.follow("api", "0-0", block_ms=0)
    assert any(isinstance(o, ev.Notice) and "snoozed the approval for deploy" in o.text for o in notices)

    wiring = server.harness.wiring
    server.harness.clock.advance(31 * 60)
    await Sweeper(wiring.store, wiring.bus, wiring.tools, server.harness.clock).sweep()
    await server.drain()
    _, outbound = await wiring.bus.follow("api", "0-0", block_ms=0)
    cards = [o for o in outbound if isinstance(o, ev.ApprovalRequest) and o.approval_id == approval_id]
    assert cards[-1].snoozed_until is None and any(c.snoozed_until is not None for c in cards), "marked, then back"


async def test_several_approvals_are_decided_each_on_its_own(server: Server) -> None:
    first, second, third = [await request(server, s) for s in ("api", "web", "worker")]
    await server.call("POST", f"/v1/approvals/{third}/decision", json={"decision": "reject", "comment": "no"})
    body = {"approval_ids": [first, second, first, third, "nosuchid"], "decision": "approve"}
    reply = await server.call("POST", "/v1/approvals/decisions", json=body)
    assert reply.status == 200, reply.body
    outcomes = {r["approval_id"]: (r["status"], r["code"]) for r in reply.body["results"]}
    assert len(reply.body["results"]) == 4, "each id once"
    assert outcomes == {
        first: (202, ""),
        second: (202, ""),
        third: (409, "approval_decided"),
        "nosuchid": (404, "approval_not_found"),
    }
    assert reply.body["accepted"] == 2
    await server.drain()
    assert sorted(await ids(server, "status=approved")) == sorted([first, second])

    again = await server.call("POST", "/v1/approvals/decisions", json={"approval_ids": [first], "decision": "reject"})
    assert again.status == 422, "a rejection says why"
    by_bob = await server.call(
        "POST", "/v1/approvals/decisions", token=BOB, json={"approval_ids": [first], "decision": "approve"}
    )
    assert [r["status"] for r in by_bob.body["results"]] == [403], "permission is checked for each"
