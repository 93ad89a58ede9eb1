"""Edit before approve through the API (the decision's `args`, what the console's edit form sends): an edit
that breaks the schema is refused at once and changes nothing, an edit runs the edited call, an edit into a
stricter policy asks for that policy's approvals, and the request for the old arguments answers no more."""

from __future__ import annotations

from pathlib import Path

from tests.test_edits import TOOLS
from tests.web.conftest import BOB, CAROL, Server


async def _server(start_server, fake_redis, tmp_path: Path) -> Server:
    (tmp_path / "tools.toml").write_text(
        TOOLS.replace("'cli:operator', 'cli:alice', 'cli:bob'", "'web:alice', 'web:carol'")
    )
    return await start_server(fake_redis, BOT_TOOLS_FILE=str(tmp_path / "tools.toml"))


async def _deploy(server: Server, text: str) -> str:
    reply = await server.call("POST", "/v1/threads", token=BOB, json={"text": text})
    assert reply.status == 202, reply.body
    await server.drain()
    return str(reply.body["thread_id"])


async def _pending(server: Server) -> list[dict[str, object]]:
    return list((await server.call("GET", "/v1/approvals?status=pending")).body["approvals"])


async def _events(server: Server, thread_id: str) -> list[dict[str, object]]:
    return list((await server.call("GET", f"/v1/threads/{thread_id}", token=BOB)).body["events"])


async def test_an_api_edit_runs_the_edited_call_and_a_broken_one_is_refused(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _deploy(server, "/deploy api 1.2 staging")
    [approval] = await _pending(server)
    path = f"/v1/approvals/{approval['approval_id']}/decision"

    broken = await server.call("POST", path, json={"decision": "approve", "args": {"version": "one"}})
    assert broken.status == 422 and broken.code == "edit_refused" and "does not fit deploy" in broken.message
    assert [a["approval_id"] for a in await _pending(server)] == [approval["approval_id"]], "nothing changed"

    edit = await server.call("POST", path, json={"decision": "approve", "args": {"version": "1.3"}})
    assert edit.status == 202 and "digest" in edit.body["message"], edit.body
    await server.drain()
    events = await _events(server, thread_id)
    [edited] = [e for e in events if e["type"] == "arguments_edited"]
    assert (edited["before"]["version"], edited["after"]["version"], edited["by"]) == ("1.2", "1.3", "web:alice")  # type: ignore[index]
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert "deployed api 1.3 to staging" in str(result["output"])
    assert await _pending(server) == []

    stale = await server.call("POST", path, json={"decision": "approve"})
    assert stale.status == 409, "the request for the old arguments answers no more"


async def test_an_api_edit_into_production_asks_for_its_two_approvals(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    thread_id = await _deploy(server, "/deploy api 1.2 staging")
    [old] = await _pending(server)
    edit = await server.call(
        "POST",
        f"/v1/approvals/{old['approval_id']}/decision",
        json={"decision": "approve", "args": {"environment": "production"}, "digest": old["digest"]},
    )
    assert edit.status == 202, edit.body
    await server.drain()
    [new] = await _pending(server)
    assert new["approval_id"] != old["approval_id"] and new["digest"] != old["digest"]
    assert new["args"]["environment"] == "production" and new["edited_from"] == old["approval_id"]  # type: ignore[index]
    assert [vote["by"] for vote in new["votes"]] == ["web:alice"] and new["needed"] == 2  # type: ignore[union-attr,index]
    assert "tool_result" not in [e["type"] for e in await _events(server, thread_id)], "one of two approvals"

    stale = await server.call(
        "POST",
        f"/v1/approvals/{new['approval_id']}/decision",
        token=CAROL,
        json={"decision": "approve", "digest": old["digest"]},
    )
    assert stale.status == 409 and "another version" in stale.message
    second = await server.call(
        "POST",
        f"/v1/approvals/{new['approval_id']}/decision",
        token=CAROL,
        json={"decision": "approve", "digest": new["digest"]},
    )
    assert second.status == 202, second.body
    await server.drain()
    [result] = [e for e in await _events(server, thread_id) if e["type"] == "tool_result"]
    assert "deployed api 1.2 to production" in str(result["output"])
