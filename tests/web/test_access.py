"""Authorization as data: who may read, steer, list and speak, identity by operation by resource."""

from __future__ import annotations

import pytest

from tests.web.conftest import ALICE, BOB, DAVE, Server

DEPLOY = "/deploy api 1.4.2 production"


async def bobs_thread(server: Server) -> str:
    reply = await server.call("POST", "/v1/threads", token=BOB, json={"text": DEPLOY})
    assert reply.status == 202, reply.body
    await server.drain()
    return str(reply.body["thread_id"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/threads/{id}", None),
        ("GET", "/v1/threads/{id}/events", None),
        ("POST", "/v1/threads/{id}/events", {"text": "answer for bob"}),
        ("POST", "/v1/threads/{id}/pause", {"reason": "mine now"}),
    ],
)
async def test_someone_elses_thread_is_403_naming_the_permission(server: Server, method, path, body) -> None:
    thread_id = await bobs_thread(server)
    before = await server.inbox_length()
    refused = await server.call(method, path.format(id=thread_id), token=DAVE, json=body)
    assert (refused.status, refused.code) == (403, "forbidden")
    assert "web:dave may not" in refused.message and "it is web:bob's" in refused.message
    assert "[access].admins" in refused.message
    assert await server.inbox_length() == before, "nothing was enqueued"
    owner = await server.call(method, path.format(id=thread_id), token=BOB, json=body)
    admin = await server.call(method, path.format(id=thread_id), token=ALICE, json=body)
    assert owner.status in (200, 202, 409) and admin.status in (200, 202, 409)


async def test_listings_show_only_what_the_identity_may_read(server: Server) -> None:
    thread_id = await bobs_thread(server)
    dave_threads = (await server.call("GET", "/v1/threads", token=DAVE)).body["threads"]
    bob_threads = (await server.call("GET", "/v1/threads", token=BOB)).body["threads"]
    alice_threads = (await server.call("GET", "/v1/threads", token=ALICE)).body["threads"]
    assert dave_threads == [] and [t["thread_id"] for t in bob_threads] == [thread_id]
    assert [t["thread_id"] for t in alice_threads] == [thread_id]
    assert (await server.call("GET", "/v1/approvals", token=DAVE)).body["approvals"] == []
    assert len((await server.call("GET", "/v1/approvals", token=BOB)).body["approvals"]) == 1, "his own request"
    assert len((await server.call("GET", "/v1/approvals", token=ALICE)).body["approvals"]) == 1


async def test_an_approver_reads_only_the_thread_whose_approval_she_may_decide(
    start_server, fake_redis, tmp_path
) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\noncall = ['web:dave']\n[access]\nadmins = ['web:alice']\n"
        "[tools.wipe]\ndescription = 'Wipe a cache.'\nexecutor = {kind='command', argv=['echo', 'wiped']}\n"
        "approval = {required=true, approvers=['group:oncall'], allow_self=false}\n"
    )
    server = await start_server(fake_redis, BOT_TOOLS_FILE=str(tools), BOT_GROUP_ONCALL="web:dave")
    launched = await server.call("POST", "/v1/threads", token=BOB, json={"text": "/wipe"})
    await server.drain()
    thread = f"/v1/threads/{launched.body['thread_id']}"
    assert (await server.call("GET", thread, token=DAVE)).status == 200, "an approver reads what he is asked"
    (approval,) = (await server.call("GET", "/v1/approvals", token=DAVE)).body["approvals"]
    decided = f"/v1/approvals/{approval['approval_id']}/decision"
    assert (await server.call("POST", decided, token=DAVE, json={"decision": "approve"})).status == 202
    await server.drain()
    after = await server.call("GET", thread, token=DAVE)
    assert (after.status, after.code) == (403, "forbidden"), "once decided, it is bob's thread again"


async def test_speaking_on_a_chat_channel_needs_access_speak(server: Server) -> None:
    body = {"text": "/status api staging", "channel": "slack", "conversation": "T1/C1/1700000001.000100"}
    refused = await server.call("POST", "/v1/threads", token=BOB, json=body)
    assert (refused.status, refused.code) == (403, "forbidden") and "[access].speak.slack" in refused.message
    assert await server.inbox_length() == 0
    assert (await server.call("POST", "/v1/threads", token=ALICE, json=body)).status == 202
    api = await server.call("POST", "/v1/threads", token=BOB, json={"text": "/status api staging", "channel": "api"})
    assert api.status == 202, "the API's own channel needs nothing"
