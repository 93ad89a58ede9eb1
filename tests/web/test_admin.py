"""/metrics and the dead letters: admins (and, for /metrics, [access].metrics) only."""

from __future__ import annotations

from core.domain.events import MessageTrigger
from core.domain.ids import new_id
from core.redis.bus import DEAD_LETTER
from tests.web.conftest import ALICE, BOB, DAVE, Server


async def test_metrics_need_an_admin_or_a_metrics_token(start_server, fake_redis, tmp_path) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text("[groups]\noncall = ['web:alice']\n[access]\nadmins = ['group:oncall']\nmetrics = ['web:dave']\n")
    server = await start_server(fake_redis, BOT_TOOLS_FILE=str(tools))
    anonymous = await server.call("GET", "/metrics", token=None)
    refused = await server.call("GET", "/metrics", token=BOB)
    assert anonymous.status == 401
    assert (refused.status, refused.code) == (403, "forbidden") and "[access].metrics" in refused.message
    for token in (ALICE, DAVE):
        async with server.session.get(server.url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as got:
            assert got.status == 200 and "bot_inbox_length" in await got.text()


async def park(server: Server, text: str) -> tuple[str, MessageTrigger]:
    trigger = MessageTrigger(id=new_id(), channel="api", conversation=f"api/{new_id()}", sender="web:bob", text=text)
    await server.harness.wiring.bus.dead_letter("1-1", trigger.model_dump_json(), "RuntimeError: the tool crashed")
    newest = await server.harness.wiring.redis.xrevrange(DEAD_LETTER, count=1)
    return newest[0][0].decode(), trigger


async def test_dead_letters_are_listed_a_page_at_a_time_and_sent_back_once(server: Server) -> None:
    parked = [await park(server, f"/status api staging {n}") for n in range(3)]
    refused = await server.call("GET", "/v1/admin/dead-letters", token=BOB)
    assert (refused.status, refused.code) == (403, "forbidden") and "[access].admins" in refused.message

    first = await server.call("GET", "/v1/admin/dead-letters?limit=2")
    assert [x["id"] for x in first.body["letters"]] == [parked[2][0], parked[1][0]], "newest first"
    second = await server.call("GET", f"/v1/admin/dead-letters?limit=2&before={first.body['next_before']}")
    assert [x["id"] for x in second.body["letters"]] == [parked[0][0]] and second.body["next_before"] is None
    assert "the tool crashed" in second.body["letters"][0]["error"]

    letter, trigger = parked[0]
    before = await server.inbox_length()
    again = await server.call("POST", f"/v1/admin/dead-letters/{letter}/retry")
    assert again.status == 202 and again.body["trigger_id"] == trigger.id and not again.body["duplicate"]
    assert await server.inbox_length() == before + 1
    gone = await server.call("POST", f"/v1/admin/dead-letters/{letter}/retry")
    assert (gone.status, gone.code) == (404, "dead_letter_not_found")
    assert len((await server.call("GET", "/v1/admin/dead-letters")).body["letters"]) == 2


async def test_a_dead_letter_that_never_was_a_trigger_cannot_be_retried(server: Server) -> None:
    await server.harness.wiring.bus.dead_letter("1-2", "{not json", "malformed trigger")
    (letter,) = (await server.call("GET", "/v1/admin/dead-letters")).body["letters"]
    refused = await server.call("POST", f"/v1/admin/dead-letters/{letter['id']}/retry")
    assert (refused.status, refused.code) == (409, "not_a_trigger")
    assert await server.inbox_length() == 0
