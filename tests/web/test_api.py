"""The REST API through uvicorn and a real HTTP client, with a worker applying what it enqueues."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from tests.web.conftest import ALICE, BOB, CAROL, Server

DEPLOY = "/deploy api 1.4.2 production"


def deploys(tmp_path: Path) -> list[tuple[str, str, str]]:
    path = tmp_path / "data" / "deployments.json"
    history = json.loads(path.read_text())["history"] if path.exists() else []
    return [(e["service"], e["version"], e["by"]) for e in history if e["action"] == "deploy"]


async def launch(server: Server, text: str = DEPLOY, token: str = BOB) -> str:
    reply = await server.call("POST", "/v1/threads", token=token, json={"text": text})
    assert reply.status == 202, reply.body
    await server.drain()
    return str(reply.body["thread_id"])


async def pending_approval(server: Server) -> str:
    reply = await server.call("GET", "/v1/approvals?status=pending")
    assert reply.status == 200 and len(reply.body["approvals"]) == 1, reply.body
    return str(reply.body["approvals"][0]["approval_id"])


async def snapshot(server: Server, thread_id: str) -> tuple[object, ...]:
    """Everything a refused request must leave as it was."""
    store = server.harness.wiring.store
    state = await store.load_state(thread_id)
    approvals = [record.model_dump() for record in await store.pending_approvals()]
    return state.model_dump(), approvals, await server.inbox_length()


async def test_launch_then_approve_through_the_api_deploys_once(redis_client, start_server, tmp_path) -> None:
    server = await start_server(redis_client)
    thread_id = await launch(server)
    thread = await server.call("GET", f"/v1/threads/{thread_id}")
    assert thread.body["thread"]["status"] == "awaiting_approval" and thread.body["thread"]["requester"] == "web:bob"
    approval_id = await pending_approval(server)
    assert deploys(tmp_path) == []

    decided = await server.call("POST", f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"})
    assert decided.status == 202 and decided.body["thread_id"] == thread_id
    await server.drain()
    again = await server.call("POST", f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"})
    await server.drain()

    assert deploys(tmp_path) == [("api", "1.4.2", "web:bob")]
    assert again.status == 409 and again.code == "approval_decided"
    assert f"approval {approval_id} was already approved by web:alice" in again.message
    thread = await server.call("GET", f"/v1/threads/{thread_id}")
    events = thread.body["events"]
    assert thread.body["thread"]["status"] == "done"
    assert [(e["type"], e["actor"]) for e in events if e["type"] == "approval_decided"] == [
        ("approval_decided", "web:alice")
    ]
    outputs = [e["output"] for e in events if e["type"] == "tool_result"]
    assert len(outputs) == 1 and outputs[0].startswith("deployed api 1.4.2 to production")
    assert (await server.call("GET", "/v1/approvals")).body["approvals"] == []


async def test_a_token_without_approval_rights_cannot_approve(server: Server, tmp_path) -> None:
    thread_id = await launch(server)
    approval_id = await pending_approval(server)
    listed = await server.call("GET", "/v1/approvals", token=BOB)
    assert listed.body["approvals"][0]["may_decide"] is False
    before = await snapshot(server, thread_id)

    refused = await server.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=BOB, json={"decision": "approve"}
    )

    assert refused.status == 403 and refused.code == "not_an_approver"
    assert "web:bob may not decide approval" in refused.message and "the oncall group" in refused.message
    assert await snapshot(server, thread_id) == before
    await server.drain()
    assert deploys(tmp_path) == []


async def test_two_approvers_at_once_get_one_acceptance(server: Server, tmp_path) -> None:
    """The compare-and-set runs in the request, so exactly one of two concurrent decisions is accepted."""
    await launch(server)
    approval_id = await pending_approval(server)
    path = f"/v1/approvals/{approval_id}/decision"
    replies = await asyncio.gather(
        server.call("POST", path, token=ALICE, json={"decision": "approve"}),
        server.call("POST", path, token=CAROL, json={"decision": "reject", "comment": "freeze"}),
    )
    assert sorted(reply.status for reply in replies) == [202, 409]
    winner = next(reply for reply in replies if reply.status == 202)
    await server.drain()
    assert deploys(tmp_path) == ([("api", "1.4.2", "web:bob")] if winner is replies[0] else [])


async def test_a_rejection_needs_a_reason_and_reaches_the_thread(server: Server, tmp_path) -> None:
    thread_id = await launch(server)
    approval_id = await pending_approval(server)
    path = f"/v1/approvals/{approval_id}/decision"
    no_reason = await server.call("POST", path, json={"decision": "reject"})
    assert no_reason.status == 422 and "body.reject.comment: Field required" in no_reason.message

    assert (await server.call("POST", path, json={"decision": "reject", "comment": "change freeze"})).status == 202
    await server.drain()
    approve = await server.call("POST", path, json={"decision": "approve"})

    assert approve.status == 409 and "already rejected by web:alice" in approve.message
    events = (await server.call("GET", f"/v1/threads/{thread_id}")).body["events"]
    errors = [e for e in events if e["type"] == "tool_error"]
    assert errors[-1]["kind"] == "rejected" and "change freeze" in errors[-1]["error"]
    assert deploys(tmp_path) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("GET", "/v1/threads/tnope", None, "thread_not_found"),
        ("POST", "/v1/threads/tnope/events", {"text": "hello"}, "thread_not_found"),
        ("POST", "/v1/threads/tnope/pause", None, "thread_not_found"),
        ("POST", "/v1/threads/tnope/resume", None, "thread_not_found"),
        ("POST", "/v1/approvals/zzzz9999/decision", {"decision": "approve"}, "approval_not_found"),
    ],
)
async def test_an_unknown_id_is_a_404_that_changes_nothing(server: Server, method, path, body, code) -> None:
    reply = await server.call(method, path, json=body)
    assert reply.status == 404 and reply.code == code
    assert "there is no" in reply.message and "GET /v1/" in reply.message  # what happened, and where to look
    assert await server.inbox_length() == 0
    assert await server.harness.wiring.store.list_threads() == []


async def test_pausing_a_paused_thread_and_resuming_a_running_one_are_409s(server: Server) -> None:
    thread_id = await launch(server)
    resume = await server.call("POST", f"/v1/threads/{thread_id}/resume")
    assert resume.status == 409 and resume.code == "not_paused"

    assert (await server.call("POST", f"/v1/threads/{thread_id}/pause", json={"reason": "incident"})).status == 202
    await server.drain()
    before = await snapshot(server, thread_id)
    again = await server.call("POST", f"/v1/threads/{thread_id}/pause")

    assert again.status == 409 and again.code == "already_paused"
    assert f"thread {thread_id} is already paused; nothing changed" in again.message
    assert await snapshot(server, thread_id) == before
    assert (await server.call("POST", f"/v1/threads/{thread_id}/resume")).status == 202
    await server.drain()
    thread = (await server.call("GET", f"/v1/threads/{thread_id}")).body
    assert [e["type"] for e in thread["events"]][-2:] == ["paused", "resumed"]
    assert thread["thread"]["paused"] is False and thread["thread"]["status"] == "awaiting_approval"


async def test_input_goes_to_the_thread_and_time_travel_shows_any_event(server: Server) -> None:
    thread_id = await launch(server, "/status api staging")
    assert (await server.call("POST", f"/v1/threads/{thread_id}/events", json={"text": "/history api"})).status == 202
    await server.drain()
    detail = (await server.call("GET", f"/v1/threads/{thread_id}")).body
    types = [e["type"] for e in detail["events"]]
    assert types.count("user_message") == 2 and detail["at"] == len(types)

    first_reply = types.index("agent_reply") + 1
    past = (await server.call("GET", f"/v1/threads/{thread_id}?at={first_reply}")).body
    assert past["at"] == first_reply and past["state"]["seq"] == first_reply and past["state"]["status"] == "done"
    assert past["state"]["last_user_text"] == "/status api staging" and len(past["events"]) == len(types)
    beyond = await server.call("GET", f"/v1/threads/{thread_id}?at={len(types) + 1}")
    assert beyond.status == 422 and f"use 1..{len(types)}" in beyond.message


async def test_launch_refusals_say_what_to_do(server: Server) -> None:
    decision = await server.call("POST", "/v1/threads", json={"text": "approve abcd1234"})
    assert decision.status == 422 and "POST /v1/approvals/abcd1234/decision" in decision.message
    agent = await server.call("POST", "/v1/threads", json={"text": "hi", "agent": "mailbot"})
    assert agent.status == 422 and "the agents are " in agent.message
    body = {"text": "/status api staging", "conversation": "ticket-42"}
    assert (await server.call("POST", "/v1/threads", json=body)).status == 202
    await server.drain()
    exists = await server.call("POST", "/v1/threads", json=body)
    assert exists.status == 409 and "/events" in exists.message
    assert await server.inbox_length() == 1


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "send `Authorization: Bearer <token>`"),
        ({"Authorization": "Bearer wrong-token-000000"}, "not in BOT_API_TOKENS"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/threads"),
        ("POST", "/v1/threads"),
        ("GET", "/v1/approvals"),
        ("POST", "/v1/approvals/abc/decision"),
        ("GET", "/v1/me"),
    ],
)
async def test_every_call_needs_a_known_bearer_token(server: Server, method, path, headers, fragment) -> None:
    reply = await server.call(method, path, token=None, headers=headers, json={"text": "/status api staging"})
    assert reply.status == 401 and reply.code == "unauthorized" and fragment in reply.message
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert await server.inbox_length() == 0


async def test_malformed_requests_get_the_same_error_shape(server: Server) -> None:
    bad_json = await server.call("POST", "/v1/threads", data=b"{nope", headers={"Content-Type": "application/json"})
    missing = await server.call("POST", "/v1/threads", json={"txt": "typo"})
    route = await server.call("GET", "/v1/nothing-here")
    method = await server.call("DELETE", "/v1/threads")
    huge = await server.call("POST", "/v1/threads", data=io.BytesIO(b"x" * (1024 * 1024 + 1)))
    assert [r.status for r in (bad_json, missing, route, method, huge)] == [422, 422, 404, 405, 413]
    assert "body.text: Field required" in missing.message and "/openapi.json" in missing.message
    assert all(set(r.body["error"]) == {"code", "message"} for r in (bad_json, missing, route, method, huge))


async def test_me_and_the_openapi_document(server: Server) -> None:
    assert (await server.call("GET", "/v1/me", token=CAROL)).body == {"identity": "web:carol"}
    spec = (await server.call("GET", "/openapi.json", token=None)).body
    launch_schema = spec["paths"]["/v1/threads"]["post"]
    assert launch_schema["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/LaunchRequest")
    assert set(launch_schema["responses"]) >= {"202", "401", "409", "422"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


async def test_a_decision_past_the_deadline_is_approval_expired_before_any_sweep(server: Server, tmp_path) -> None:
    await launch(server)
    approval_id = await pending_approval(server)
    server.harness.clock.advance(3601)  # the shipped production policies expire after an hour
    late = await server.call("POST", f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"})
    assert (late.status, late.code) == (409, "approval_expired")
    await server.drain()
    assert deploys(tmp_path) == []


async def test_threads_and_events_come_a_page_at_a_time(server: Server) -> None:
    launched = []
    for _ in range(5):
        reply = await server.call("POST", "/v1/threads", token=BOB, json={"text": "/status api staging"})
        launched.append(reply.body["thread_id"])
        await server.drain()  # created now, a second after the one before
        server.harness.clock.advance(1)

    pages, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await server.call("GET", f"/v1/threads{query}")).body
        pages.append([t["thread_id"] for t in page["threads"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [launched[4:2:-1], launched[2:0:-1], launched[:1]], "newest first, each once"
    forged = await server.call("GET", "/v1/threads?cursor=bm9wZQ")
    assert (forged.status, forged.code) == (422, "invalid_request") and "start again without it" in forged.message

    thread_id = launched[0]
    everything = (await server.call("GET", f"/v1/threads/{thread_id}")).body["events"]
    first = (await server.call("GET", f"/v1/threads/{thread_id}/events?limit=3")).body
    rest = (await server.call("GET", f"/v1/threads/{thread_id}/events?after={first['next_after']}&limit=100")).body
    assert [e["id"] for e in first["events"] + rest["events"]] == [e["id"] for e in everything]
    assert first["next_after"] == 3 and rest["next_after"] is None
    missing = await server.call("GET", "/v1/threads/tnothing/events")
    assert (missing.status, missing.code) == (404, "thread_not_found")


async def test_ended_approvals_are_listed_by_status(server: Server, tmp_path) -> None:
    await launch(server)
    approved_id = await pending_approval(server)
    path = f"/v1/approvals/{approved_id}/decision"
    assert (await server.call("POST", path, json={"decision": "approve"})).status == 202
    await server.drain()
    await launch(server, text="/deploy web 2.0.0 production")
    rejected_id = await pending_approval(server)
    body = {"decision": "reject", "comment": "not today"}
    assert (await server.call("POST", f"/v1/approvals/{rejected_id}/decision", json=body)).status == 202
    await server.drain()

    def ids(reply) -> list[str]:
        return [a["approval_id"] for a in reply.body["approvals"]]

    assert ids(await server.call("GET", "/v1/approvals?status=approved")) == [approved_id]
    rejected = await server.call("GET", "/v1/approvals?status=rejected")
    assert ids(rejected) == [rejected_id] and rejected.body["approvals"][0]["comment"] == "not today"
    assert ids(await server.call("GET", "/v1/approvals?status=pending")) == []
    assert ids(await server.call("GET", "/v1/approvals?status=rejected", token=CAROL)) == [rejected_id]
