"""The `web` channel over HTTP: chat messages become triggers; each person sees their own conversation."""

from __future__ import annotations

import asyncio
import json

from tests.web.conftest import ALICE, BOB, CAROL, Server


async def start_reading(server: Server, token: str = ALICE, conversation: str = "c1") -> str:
    reply = await server.call("GET", f"/web/updates?conversation={conversation}", token=token)
    return str(reply.body["after"])


async def read(server: Server, after: str, token: str = ALICE, conversation: str = "c1") -> list[dict]:
    reply = await server.call("GET", f"/web/updates?conversation={conversation}&after={after}&wait=0", token=token)
    assert reply.status == 200, reply.body
    return list(reply.body["items"])


def kinds(items: list[dict]) -> list[str]:
    """Each item's kind, a progress note (a reply that is not final) shown as `progress: <its text>`."""
    return [
        f"progress: {item['text']}" if item["kind"] == "reply" and not item["final"] else item["kind"] for item in items
    ]


async def say(server: Server, text: str, token: str = ALICE, conversation: str = "c1") -> None:
    reply = await server.call("POST", "/web/messages", token=token, json={"conversation": conversation, "text": text})
    assert reply.status == 202, reply.body
    await server.drain()


async def test_a_chat_message_gets_its_reply_in_the_same_conversation(server: Server) -> None:
    after = await start_reading(server)
    await say(server, "/status api staging")
    items = await read(server, after)
    assert kinds(items) == ["progress: running status…", "reply"]
    assert items[1]["final"] and items[1]["text"].startswith("api in staging: 1.0.0")
    assert items[0]["thread_id"] == items[1]["thread_id"]
    thread = (await server.call("GET", f"/v1/threads/{items[1]['thread_id']}")).body["thread"]
    assert (thread["channel"], thread["conversation"], thread["requester"]) == ("web", "web:alice/c1", "web:alice")


async def test_an_approval_card_decided_from_the_chat_gets_its_receipt(server: Server, tmp_path) -> None:
    """Alice asks, Carol (on call too) approves from her own chat: each gets the receipt, Alice the result."""
    after, carol_after = await start_reading(server), await start_reading(server, CAROL)
    await say(server, "/deploy api 1.4.2 production")
    card = (await read(server, after))[0]
    assert card["kind"] == "approval_request" and card["args"]["environment"] == "production"
    assert card["approvers"] == ["cli:operator", "web:carol"]  # on call, and not Alice: she asked
    body = {"conversation": "c1", "approval_id": card["approval_id"], "decision": "approve"}
    assert (await server.call("POST", "/web/decisions", token=CAROL, json=body)).status == 202
    await server.drain()
    items = await read(server, after)
    assert kinds(items) == ["approval_request", "decision_receipt", "progress: running deploy…", "reply"]
    assert items[1]["by"] == "web:carol" and items[3]["text"].startswith("deployed api 1.4.2 to production")
    (receipt,) = await read(server, carol_after, CAROL)  # Carol's own copy, in her conversation
    assert receipt["kind"] == "decision_receipt" and receipt["approval_id"] == card["approval_id"]
    assert receipt["by"] == "web:carol"
    history = json.loads((tmp_path / "data" / "deployments.json").read_text())["history"]
    assert [(e["action"], e["by"]) for e in history] == [("deploy", "web:alice")]


async def test_another_person_never_sees_your_conversation_or_your_refusals(server: Server) -> None:
    alice_after, bob_after = await start_reading(server), await start_reading(server, BOB)
    await say(server, "/status api staging")  # alice, conversation c1
    await say(server, "approve zzzz9999", token=BOB)  # bob, his own conversation c1: refused
    assert [item["kind"] for item in await read(server, bob_after, BOB)] == ["notice"]
    assert kinds(await read(server, alice_after)) == ["progress: running status…", "reply"]
    notice = (await read(server, bob_after, BOB))[0]
    assert notice["to"] == "web:bob" and "there is no approval 'zzzz9999'" in notice["text"]


async def test_a_long_poll_returns_as_soon_as_a_message_arrives(server: Server) -> None:
    after = await start_reading(server)
    poll = asyncio.create_task(server.call("GET", f"/web/updates?conversation=c1&after={after}&wait=25"))
    await say(server, "/status api staging")
    reply = await asyncio.wait_for(poll, 10)
    assert [item["kind"] for item in reply.body["items"]] == ["reply"]


async def test_web_requests_are_checked(server: Server) -> None:
    bad_after = await server.call("GET", "/web/updates?conversation=c1&after=$")
    bad_conversation = await server.call("POST", "/web/messages", json={"conversation": "../x", "text": "hi"})
    no_reason = await server.call(
        "POST", "/web/decisions", json={"conversation": "c1", "approval_id": "a", "decision": "reject"}
    )
    unknown = await server.call(
        "POST", "/web/decisions", json={"conversation": "c1", "approval_id": "zzzz9999", "decision": "approve"}
    )
    anonymous = await server.call("GET", "/web/updates?conversation=c1", token=None)
    assert [r.status for r in (bad_after, bad_conversation, no_reason, unknown, anonymous)] == [422, 422, 422, 404, 401]
    assert await server.inbox_length() == 0
