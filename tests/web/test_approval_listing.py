"""Approvals listed by status, requester and decider, a page at a time, each shown to who may see it."""

from __future__ import annotations

from tests.web.conftest import ALICE, BOB, CAROL, DAVE, Server


async def request(server: Server, service: str) -> str:
    server.harness.clock.advance(1)  # the requester index is ordered by when each was asked
    reply = await server.call("POST", "/v1/threads", token=BOB, json={"text": f"/deploy {service} 1.4.2 production"})
    assert reply.status == 202, reply.body
    await server.drain()
    pending = (await server.call("GET", "/v1/approvals?requester=web:bob&status=pending")).body["approvals"]
    return str(next(a["approval_id"] for a in pending if a["args"]["service"] == service))


async def decide(server: Server, approval_id: str, token: str, decision: str) -> None:
    reply = await server.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=token, json={"decision": decision, "comment": "not now"}
    )
    assert reply.status == 202, reply.body
    await server.drain()


async def ids(server: Server, query: str, token: str = ALICE) -> list[str]:
    reply = await server.call("GET", f"/v1/approvals?{query}", token=token)
    assert reply.status == 200, reply.body
    return [a["approval_id"] for a in reply.body["approvals"]]


async def test_approvals_by_status_requester_and_decider(server: Server) -> None:
    approved, rejected, pending = [await request(server, s) for s in ("api", "web", "worker")]
    await decide(server, approved, ALICE, "approve")
    await decide(server, rejected, CAROL, "reject")

    assert await ids(server, "") == [pending], "pending by default"
    assert await ids(server, "status=approved") == [approved]
    assert await ids(server, "status=rejected") == [rejected]
    assert await ids(server, "requester=web:bob") == [pending, rejected, approved], "most recent first"
    assert await ids(server, "decided_by=web:alice") == [approved]
    assert await ids(server, "decided_by=web:carol&status=approved") == []
    assert await ids(server, "requester=web:bob", token=BOB) == [pending, rejected, approved], "his own requests"
    assert await ids(server, "requester=web:bob", token=DAVE) == [], "not his, not his to decide"


async def test_every_approval_is_on_exactly_one_page(server: Server) -> None:
    requested = [await request(server, s) for s in ("api", "web", "worker", "payments")]
    seen: list[str] = []
    cursor = ""
    while True:
        reply = await server.call("GET", f"/v1/approvals?requester=web:bob&limit=1{cursor}")
        seen += [a["approval_id"] for a in reply.body["approvals"]]
        if reply.body["next_cursor"] is None:
            break
        cursor = f"&cursor={reply.body['next_cursor']}"
        if len(seen) == 2:
            requested.append(await request(server, "api"))  # a new one goes before the first page
    assert sorted(seen) == sorted(requested[:4]), "each once, none lost, the late one not among them"
    forged = await server.call("GET", "/v1/approvals?cursor=bm90LWEtY3Vyc29y")
    assert (forged.status, forged.code) == (422, "invalid_request")
